import { describe, it, expect } from 'vitest';
import { validateConfig } from '../../../src/config/validate.js';
import type { Config } from '../../../src/config/schema/index.js';
import { EndpointSchema } from '../../../src/config/schema/cluster.js';
import {
  applyEndpointDelta,
  diffEndpoints,
  packConfig,
  patchEndpoints,
  sameCluster,
  sameEndpoint,
  unpackConfig,
} from '../../../src/config/endpoint-delta.js';

function configOf(raw: Record<string, unknown>): Config {
  const r = validateConfig({ listeners: [{ name: 'main', address: '127.0.0.1:8080' }], routes: [], ...raw }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config;
}

describe('endpoint deltas', () => {
  it('an endpoint-only change is a delta by address: new and changed endpoints upserted, missing ones removed', () => {
    const a = configOf({
      clusters: [
        { name: 'app', endpoints: [{ address: 'a:1' }, { address: 'b:1' }, { address: 'c:1' }] },
        { name: 'x', endpoints: [{ address: 'x:1' }] },
      ],
    });
    const b = configOf({
      clusters: [
        { name: 'app', endpoints: [{ address: 'c:1' }, { address: 'b:1', weight: 2 }, { address: 'd:1' }] },
        { name: 'x', endpoints: [{ address: 'x:1' }] },
      ],
    });
    const delta = diffEndpoints(a, b)!;
    expect(delta).toEqual({
      app: { upsert: [b.clusters[0].endpoints[1], b.clusters[0].endpoints[2]], remove: ['a:1'] },
    });
    const patched = applyEndpointDelta(a, delta);
    // Survivors keep their order, a changed one its place, new ones at the end; the input is not touched.
    expect(patched.clusters[0].endpoints.map((e) => [e.address, e.weight])).toEqual([
      ['b:1', 2],
      ['c:1', 1],
      ['d:1', 1],
    ]);
    expect(patched.clusters[1]).toBe(a.clusters[1]);
    expect(a.clusters[0].endpoints).toHaveLength(3);
    expect(sameCluster(patched.clusters[0], b.clusters[0])).toBe(true);
  });

  it('the same endpoints in another order are no change; anything but endpoints is not a delta', () => {
    const a = configOf({ clusters: [{ name: 'app', endpoints: [{ address: 'a:1' }, { address: 'b:1' }] }] });
    expect(
      diffEndpoints(a, configOf({ clusters: [{ name: 'app', endpoints: [{ address: 'b:1' }, { address: 'a:1' }] }] })),
    ).toEqual({});
    expect(
      diffEndpoints(
        a,
        configOf({ clusters: [{ name: 'app', endpoints: [{ address: 'a:1' }], lb: { policy: 'random' } }] }),
      ),
    ).toBeUndefined();
    expect(
      diffEndpoints(
        a,
        configOf({
          routes: [{ name: 'r', match: { path: { prefix: '/' } }, cluster: 'app' }],
          clusters: [{ name: 'app', endpoints: [{ address: 'a:1' }] }],
        }),
      ),
    ).toBeUndefined();
    expect(
      diffEndpoints(
        a,
        configOf({
          clusters: [
            { name: 'app', endpoints: [{ address: 'a:1' }] },
            { name: 'new', endpoints: [] },
          ],
        }),
      ),
    ).toBeUndefined();
  });

  it('sameEndpoint compares every field an endpoint has (a new schema field must be added to it)', () => {
    expect(Object.keys(EndpointSchema.properties).sort()).toEqual([
      'address',
      'health',
      'labels',
      'locality',
      'priority',
      'weight',
    ]);
    const base = configOf({
      clusters: [
        { name: 'c', endpoints: [{ address: 'a:1', labels: { v: '1' }, locality: { region: 'r', zone: 'z' } }] },
      ],
    }).clusters[0].endpoints[0];
    expect(sameEndpoint(base, structuredClone(base))).toBe(true);
    for (const change of [
      { weight: 3 },
      { priority: 1 },
      { health: 'draining' },
      { labels: { v: '2' } },
      { labels: { v: '1', w: '1' } },
      { locality: { ...base.locality, zone: 'y' } },
      { locality: { ...base.locality, subzone: 's' } },
    ]) {
      expect(sameEndpoint(base, { ...base, ...change } as typeof base), JSON.stringify(change)).toBe(false);
    }
  });

  it('patching applies removals and upserts on top of any order', () => {
    const eps = configOf({ clusters: [{ name: 'c', endpoints: [{ address: 'a:1' }, { address: 'b:1' }] }] }).clusters[0]
      .endpoints;
    expect(patchEndpoints(eps, { upsert: [], remove: ['a:1', 'b:1'] })).toEqual([]);
    expect(patchEndpoints([], { upsert: eps, remove: [] })).toEqual(eps);
  });

  it('packing for the wire leaves plain endpoints as addresses and restores exactly what validation made', () => {
    const config = configOf({
      clusters: [
        {
          name: 'c',
          endpoints: [
            { address: 'a:1' },
            { address: 'b:1', weight: 2 },
            { address: 'c:1', labels: { v: '1' } },
            { address: 'd:1', locality: { zone: 'z' } },
            { address: 'e:1', health: 'draining' },
          ],
        },
        { name: 'empty' },
      ],
    });
    const packed = packConfig(config);
    expect(packed.clusters[0].endpoints[0]).toBe('a:1');
    expect(packed.clusters[0].endpoints.slice(1).every((e) => typeof e === 'object')).toBe(true);
    const wire = JSON.parse(JSON.stringify(packed));
    expect(unpackConfig(wire)).toEqual(config);
  });
});
