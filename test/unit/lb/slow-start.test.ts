import { describe, it, expect } from 'vitest';
import { createLoadBalancer } from '../../../src/lb/load-balancer.js';
import { HostAges } from '../../../src/cluster/host-ages.js';
import { seededRng, type Clock } from '../../../src/common/clock.js';
import { validateConfig } from '../../../src/config/validate.js';
import type { Host } from '../../../src/cluster/host.js';
import { host, lbConfig } from '../../helpers/lb.js';

const fakeClock = (start: number) => {
  const c = { t: start, now: () => c.t } satisfies Clock & { t: number };
  return c;
};

/** Share (%) of picks that land on `address` over n picks, advancing no time. */
function shareOf(lb: { pick(ctx: undefined): Host | undefined }, address: string, n = 20000): number {
  let hits = 0;
  for (let i = 0; i < n; i++) if (lb.pick(undefined)!.address === address) hits++;
  return (100 * hits) / n;
}

describe('slow start (Envoy: weight x max(minWeightPercent, (age / window) ^ (1 / aggression)))', () => {
  // One old host and one that joined at t = 1000 ms; 60 s window. Expected share of the new host
  // is f / (1 + f) for its weight factor f.
  const cases: Array<[string, Record<string, unknown>, number, number]> = [
    ['round_robin, 6 s (the 10 % floor)', { policy: 'round_robin' }, 6_000, 0.1],
    ['round_robin, 15 s', { policy: 'round_robin' }, 15_000, 0.25],
    ['round_robin, 30 s', { policy: 'round_robin' }, 30_000, 0.5],
    ['round_robin, 45 s', { policy: 'round_robin' }, 45_000, 0.75],
    ['aggression 2, 30 s', { policy: 'round_robin', aggression: 2 }, 30_000, Math.SQRT1_2],
    ['minWeightPercent 30, 6 s', { policy: 'round_robin', minWeightPercent: 30 }, 6_000, 0.3],
    ['least_request, 15 s', { policy: 'least_request' }, 15_000, 0.25],
  ];
  for (const [name, o, age, factor] of cases) {
    it(`${name}: factor ${factor.toFixed(3)}`, () => {
      const clock = fakeClock(1000 + age);
      const { policy, ...ss } = o;
      const lb = createLoadBalancer({
        hosts: [host('old', { index: 0 }), host('new', { index: 1, healthySince: 1000 })],
        config: lbConfig({ policy, slowStart: { window: '60s', ...ss } }),
        localLocality: { region: '', zone: '', subzone: '' },
        clock,
        rng: seededRng(3),
      });
      expect(shareOf(lb, 'new')).toBeCloseTo((100 * factor) / (1 + factor), 0);
    });
  }

  it('ramps with time within one build, and the ordinary policy takes over after the window', () => {
    const clock = fakeClock(2000);
    const lb = createLoadBalancer({
      hosts: [host('old', { index: 0 }), host('new', { index: 1, healthySince: 1000 })],
      config: lbConfig({ policy: 'round_robin', slowStart: { window: '10s' } }),
      localLocality: { region: '', zone: '', subzone: '' },
      clock,
      rng: seededRng(3),
    });
    expect(shareOf(lb, 'new', 2000)).toBeCloseTo(100 * (0.1 / 1.1), 0);
    clock.t = 6000; // age 5 s: factor 0.5
    shareOf(lb, 'new', 200); // the new host's queued deadline still reflects its old weight
    expect(shareOf(lb, 'new', 6000)).toBeCloseTo(100 * (0.5 / 1.5), 0);
    clock.t = 11_000;
    expect(shareOf(lb, 'new', 1000)).toBe(50);
  });

  it('is off without a window, and hosts of a cluster seen for the first time are established', () => {
    const lb = createLoadBalancer({
      hosts: [host('old', { index: 0 }), host('new', { index: 1, healthySince: 1000 })],
      config: lbConfig({ policy: 'round_robin' }),
      localLocality: { region: '', zone: '', subzone: '' },
      clock: fakeClock(2000),
      rng: seededRng(3),
    });
    expect(shareOf(lb, 'new', 1000)).toBe(50);
    const clock = fakeClock(5000);
    const ages = new HostAges(clock);
    expect(ages.track('c', ['a', 'b'])).toEqual([0, 0]);
    clock.t = 9000;
    expect(ages.track('c', ['a', 'b', 'x'])).toEqual([0, 0, 9000]);
    clock.t = 12_000;
    expect(ages.becameHealthy('c', 'a')).toBe(12_000);
    expect(ages.track('c', ['a', 'x'])).toEqual([12_000, 9000]);
    expect(ages.track('c', ['a', 'b'])).toEqual([12_000, 12_000]); // b left and came back: new again
    ages.retainOnly(new Set());
    expect(ages.track('c', ['a'])).toEqual([0]);
  });

  it('is refused with its path for policies other than round_robin and least_request', () => {
    const r = validateConfig({ clusters: [{ name: 'c', lb: { policy: 'maglev', slowStart: { window: '30s' } } }] }, {});
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.errors).toContainEqual({
        path: 'clusters[0].lb.slowStart',
        message: 'slow start applies to round_robin and least_request only',
      });
  });
});
