import { describe, it, expect } from 'vitest';
import { validateConfig } from '../../../src/config/validate.js';
import type { Config } from '../../../src/config/schema/index.js';
import { ClusterManager, type UpstreamHost } from '../../../src/cluster/cluster-manager.js';
import { PoolRegistry } from '../../../src/pool/pool-registry.js';
import { HostAges } from '../../../src/cluster/host-ages.js';
import { createLoadBalancer } from '../../../src/lb/load-balancer.js';
import { systemClock, systemRng } from '../../../src/common/clock.js';
import type { Locality } from '../../../src/cluster/host.js';
import { applyEndpointDelta } from '../../../src/config/endpoint-delta.js';

/** No sockets: pools are only made on a host's first request, and none is made here. */
function configOf(raw: Record<string, unknown>): Config {
  const r = validateConfig({ listeners: [{ name: 'main', address: '127.0.0.1:8080' }], routes: [], ...raw }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config;
}

const eps = (n: number, from = 1) =>
  Array.from({ length: n }, (_, i) => ({ address: `10.0.${(from + i) >> 8}.${(from + i) & 255}:80` }));
const ages = new HostAges(systemClock);
const registry = new PoolRegistry();
const build = (config: Config, previous?: ClusterManager) =>
  new ClusterManager(
    config,
    registry,
    {},
    {
      locality: config.gateway.locality as Locality,
      clock: systemClock,
      rng: systemRng,
      lbFactory: createLoadBalancer,
      ages,
    },
    previous,
  );

/**
 * The publisher sends a cluster unchanged since the previous snapshot as a stub that the worker fills
 * with the config object it runs (DataPlane.fillCarried): `carry` does the same here.
 */
function carry(next: Config, previous: Config, names: string[]): Config {
  return {
    ...next,
    clusters: next.clusters.map((c) =>
      names.includes(c.name) ? previous.clusters.find((p) => p.name === c.name)! : c,
    ),
  };
}

describe('ClusterManager carries unchanged clusters over to the next snapshot', () => {
  it('a change to one cluster keeps the other cluster runtime, its host objects and their state', () => {
    const c1 = configOf({
      clusters: [
        { name: 'big', endpoints: eps(1000) },
        { name: 'small', endpoints: eps(2, 5000) },
      ],
    });
    const v1 = build(c1);
    const big = v1.get('big')!;
    const host = big.hosts[10] as UpstreamHost;
    host.stats.requests = 7;
    host.activeRequests = 3;
    const v2 = build(
      carry(
        configOf({
          clusters: [
            { name: 'big', endpoints: eps(1000) },
            { name: 'small', endpoints: eps(3, 5000) },
          ],
        }),
        c1,
        ['big'],
      ),
      v1,
    );
    expect(v2.get('big')).toBe(big);
    expect(v2.get('big')!.hosts[10]).toBe(host);
    expect(host.stats.requests).toBe(7);
    expect(host.activeRequests).toBe(3);
    expect(v2.get('small')).not.toBe(v1.get('small'));
    expect(v2.get('small')!.hosts).toHaveLength(3);
    // Every pool the carried hosts use stays retained.
    expect(v2.poolKeys.size).toBe(1003);
  });

  it('a changed cluster is rebuilt; so is every cluster when the gateway locality changes', () => {
    const c1 = configOf({
      clusters: [
        { name: 'a', endpoints: eps(2) },
        { name: 'b', endpoints: eps(2, 100) },
      ],
    });
    const v1 = build(c1);
    const c2 = carry(
      configOf({
        clusters: [
          { name: 'a', endpoints: eps(2), lb: { policy: 'random' } },
          { name: 'b', endpoints: eps(2, 100) },
        ],
      }),
      c1,
      ['b'],
    );
    const v2 = build(c2, v1);
    expect(v2.get('a')).not.toBe(v1.get('a'));
    expect(v2.get('b')).toBe(v1.get('b'));
    const v3 = build(
      carry(
        configOf({
          gateway: { locality: { region: 'r2', zone: 'z' } },
          clusters: [
            { name: 'a', endpoints: eps(2), lb: { policy: 'random' } },
            { name: 'b', endpoints: eps(2, 100) },
          ],
        }),
        c2,
        ['b'],
      ),
      v2,
    );
    expect(v3.get('b')).not.toBe(v2.get('b'));
  });

  it('an aggregate is rebuilt over its carried-over members', () => {
    const raw = (n: number) => ({
      clusters: [
        { name: 'm1', endpoints: eps(2) },
        { name: 'm2', endpoints: eps(n, 100) },
        { name: 'agg', kind: 'aggregate', clusters: ['m1', 'm2'] },
      ],
    });
    const c1 = configOf(raw(1));
    const v1 = build(c1);
    const v2 = build(carry(configOf(raw(2)), c1, ['m1']), v1);
    expect(v2.get('m1')).toBe(v1.get('m1'));
    expect(v2.get('agg')).not.toBe(v1.get('agg'));
    expect(v2.get('agg')!.hosts).toHaveLength(4);
  });
});

describe('ClusterManager applies an endpoint delta in place', () => {
  it('keeps the runtime and every unchanged host object with its state; new hosts appended, removed ones leave the pool set', () => {
    const c1 = configOf({
      clusters: [
        { name: 'big', endpoints: eps(1000) },
        { name: 'other', endpoints: eps(2, 5000) },
      ],
    });
    const v1 = build(c1);
    const big = v1.get('big')!;
    const other = v1.get('other')!;
    const kept = big.hosts[500] as UpstreamHost;
    kept.stats.requests = 9;
    kept.activeRequests = 2;
    const changed = big.hosts[1] as UpstreamHost;
    changed.stats.errors = 4;
    const removedKey = (big.hosts[0] as UpstreamHost).pool.key;
    const delta = {
      big: {
        upsert: [
          { ...c1.clusters[0].endpoints[1], weight: 5 },
          ...configOf({ clusters: [{ name: 'x', endpoints: eps(3, 3000) }] }).clusters[0].endpoints,
        ],
        remove: [c1.clusters[0].endpoints[0].address],
      },
    };
    const c2 = applyEndpointDelta(c1, delta);
    const removed = v1.applyEndpoints(c2, delta, registry, {});
    expect(v1.get('big')).toBe(big);
    expect(v1.get('other')).toBe(other);
    expect(big.hosts).toHaveLength(1000 - 1 + 3);
    expect(big.hosts.find((h) => h.address === kept.address)).toBe(kept);
    expect(kept.stats.requests).toBe(9);
    expect(kept.activeRequests).toBe(2);
    const reweighted = big.hosts.find((h) => h.address === changed.address)!;
    expect(reweighted).not.toBe(changed);
    expect(reweighted.weight).toBe(5);
    expect(reweighted.stats.errors).toBe(4);
    expect(big.hosts.slice(-3).map((h) => h.address)).toEqual(['10.0.11.184:80', '10.0.11.185:80', '10.0.11.186:80']);
    expect(big.config).toBe(c2.clusters[0]);
    expect([...removed.get('big')!]).toEqual([c1.clusters[0].endpoints[0].address]);
    expect(v1.poolKeys.has(removedKey)).toBe(false);
    expect(v1.poolKeys.size).toBe(1002 + 2);
    // The new load balancer picks over the new host set only.
    const picked = new Set<string>();
    for (let i = 0; i < 5000; i++) picked.add((big.lb.pick(undefined) as UpstreamHost).address);
    expect(picked.has(c1.clusters[0].endpoints[0].address)).toBe(false);
    expect(picked.has('10.0.11.186:80')).toBe(true);
  });

  it('restacks an aggregate over a changed member', () => {
    const c1 = configOf({
      clusters: [
        { name: 'm1', endpoints: eps(2) },
        { name: 'm2', endpoints: eps(1, 100) },
        { name: 'agg', kind: 'aggregate', clusters: ['m1', 'm2'] },
      ],
    });
    const v1 = build(c1);
    const agg = v1.get('agg')!;
    const delta = {
      m2: { upsert: configOf({ clusters: [{ name: 'x', endpoints: eps(2, 200) }] }).clusters[0].endpoints, remove: [] },
    };
    v1.applyEndpoints(applyEndpointDelta(c1, delta), delta, registry, {});
    expect(v1.get('agg')).toBe(agg);
    expect(agg.hosts.map((h) => [h.address, h.priority])).toEqual([
      ['10.0.0.1:80', 0],
      ['10.0.0.2:80', 0],
      ['10.0.0.100:80', 1],
      ['10.0.0.200:80', 1],
      ['10.0.0.201:80', 1],
    ]);
  });
});
