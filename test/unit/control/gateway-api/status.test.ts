import { describe, it, expect } from 'vitest';
import { gatewayClassStatus, gatewayStatus, routeStatus } from '../../../../src/control/sources/gateway-api/status.js';

const T0 = '2026-01-01T00:00:00Z';
const T1 = '2026-01-02T00:00:00Z';
const ours = 'meridian.dev/gateway-controller';
const accepted = (ok: boolean, gen = 1) => ({
  type: 'Accepted',
  status: ok ? ('True' as const) : ('False' as const),
  reason: ok ? 'Accepted' : 'NotAllowedByListeners',
  message: 'm',
  observedGeneration: gen,
});

describe('Gateway API status merge', () => {
  it("keeps other controllers' parents, replaces ours, and keeps lastTransitionTime while a condition holds", () => {
    const parentRef = { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'default', name: 'gw' };
    const other = {
      parentRef: { name: 'theirs' },
      controllerName: 'example.com/other',
      conditions: [{ ...accepted(true), lastTransitionTime: T0 }],
    };
    const first = routeStatus(
      { parents: [other] },
      ours,
      [{ parentRef, controllerName: ours, conditions: [accepted(true)] }],
      T0,
    )!;
    expect(first.parents).toHaveLength(2);
    expect(first.parents![0]).toBe(other);
    expect(first.parents![1].conditions[0].lastTransitionTime).toBe(T0);
    // Same status again (a resync): nothing to write.
    expect(
      routeStatus(first, ours, [{ parentRef, controllerName: ours, conditions: [accepted(true)] }], T1),
    ).toBeUndefined();
    // A new generation, still accepted: written (observedGeneration), the transition time stays.
    const bumped = routeStatus(
      first,
      ours,
      [{ parentRef, controllerName: ours, conditions: [accepted(true, 2)] }],
      T1,
    )!;
    expect(bumped.parents![1].conditions[0]).toMatchObject({ observedGeneration: 2, lastTransitionTime: T0 });
    // Flipped: a new transition time.
    const flipped = routeStatus(
      bumped,
      ours,
      [{ parentRef, controllerName: ours, conditions: [accepted(false, 2)] }],
      T1,
    )!;
    expect(flipped.parents![1].conditions[0]).toMatchObject({ status: 'False', lastTransitionTime: T1 });
    // No longer ours: only the other controller's entry stays.
    expect(routeStatus(flipped, ours, [], T1)!.parents).toEqual([other]);
  });

  it('Gateway status carries the address, conditions and listeners; GatewayClass its conditions; equal ones are not rewritten', () => {
    const wanted = {
      conditions: [accepted(true)],
      listeners: [
        {
          name: 'http',
          supportedKinds: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }],
          attachedRoutes: 2,
          conditions: [accepted(true)],
        },
      ],
      address: '127.0.0.1',
    };
    const gw = gatewayStatus(undefined, wanted, T0)!;
    expect(gw.addresses).toEqual([{ type: 'IPAddress', value: '127.0.0.1' }]);
    expect(gw.listeners![0]).toMatchObject({ attachedRoutes: 2, conditions: [{ lastTransitionTime: T0 }] });
    expect(gatewayStatus(JSON.parse(JSON.stringify(gw)), wanted, T1)).toBeUndefined();
    expect(
      gatewayStatus(gw, { ...wanted, listeners: [{ ...wanted.listeners[0], attachedRoutes: 3 }] }, T1)!.listeners![0]
        .attachedRoutes,
    ).toBe(3);
    const gc = gatewayClassStatus({}, [accepted(true)], T0)!;
    expect(gatewayClassStatus(gc, [accepted(true)], T1)).toBeUndefined();
  });
});
