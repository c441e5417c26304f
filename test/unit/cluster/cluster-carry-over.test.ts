import { describe, it, expect } from 'vitest';
import { validateConfig } from '../../../src/config/validate.js';
import type { Config } from '../../../src/config/schema/index.js';
import { ClusterManager, type UpstreamHost } from '../../../src/cluster/cluster-manager.js';
import { PoolRegistry } from '../../../src/pool/pool-registry.js';
import { HostAges } from '../../../src/cluster/host-ages.js';
import { createLoadBalancer } from '../../../src/lb/load-balancer.js';
import { systemClock, systemRng } from '../../../src/common/clock.js';
import type { Locality } from '../../../src/cluster/host.js';

/** No sockets: pools are only made on a host's first request, and none is made here. */
function configOf(raw: Record<string, unknown>): Config {
  const r = validateConfig({ listeners: [{ name: 'main', address: '127.0.0.1:8080' }], routes: [], ...raw }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config;
}

const eps = (n: number, from = 1) => Array.from({ length: n }, (_, i) => ({ address: `10.0.${(from + i) >> 8}.${(from + i) & 255}:80` }));
const ages = new HostAges(systemClock);
const registry = new PoolRegistry();
const build = (config: Config, previous?: ClusterManager) =>
  new ClusterManager(config, registry, {}, { locality: config.gateway.locality as Locality, clock: systemClock, rng: systemRng, lbFactory: createLoadBalancer, ages }, previous);

describe('ClusterManager carries unchanged clusters over to the next snapshot', () => {
  it('a change to one cluster keeps the other cluster runtime, its host objects and their state', () => {
    const v1 = build(configOf({ clusters: [{ name: 'big', endpoints: eps(1000) }, { name: 'small', endpoints: eps(2, 5000) }] }));
    const big = v1.get('big')!;
    const host = big.hosts[10] as UpstreamHost;
    host.stats.requests = 7;
    host.activeRequests = 3;
    const v2 = build(configOf({ clusters: [{ name: 'big', endpoints: eps(1000) }, { name: 'small', endpoints: eps(3, 5000) }] }), v1);
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
    const v1 = build(configOf({ clusters: [{ name: 'a', endpoints: eps(2) }, { name: 'b', endpoints: eps(2, 100) }] }));
    const v2 = build(configOf({ clusters: [{ name: 'a', endpoints: eps(2), lb: { policy: 'random' } }, { name: 'b', endpoints: eps(2, 100) }] }), v1);
    expect(v2.get('a')).not.toBe(v1.get('a'));
    expect(v2.get('b')).toBe(v1.get('b'));
    const v3 = build(configOf({ gateway: { locality: { region: 'r2', zone: 'z' } }, clusters: [{ name: 'a', endpoints: eps(2), lb: { policy: 'random' } }, { name: 'b', endpoints: eps(2, 100) }] }), v2);
    expect(v3.get('b')).not.toBe(v2.get('b'));
  });

  it('an aggregate is rebuilt over its carried-over members', () => {
    const raw = (n: number) => ({ clusters: [{ name: 'm1', endpoints: eps(2) }, { name: 'm2', endpoints: eps(n, 100) }, { name: 'agg', kind: 'aggregate', clusters: ['m1', 'm2'] }] });
    const v1 = build(configOf(raw(1)));
    const v2 = build(configOf(raw(2)), v1);
    expect(v2.get('m1')).toBe(v1.get('m1'));
    expect(v2.get('agg')).not.toBe(v1.get('agg'));
    expect(v2.get('agg')!.hosts).toHaveLength(4);
  });
});
