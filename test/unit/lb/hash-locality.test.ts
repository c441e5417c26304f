import { describe, it, expect } from 'vitest';
import { createLoadBalancer } from '../../../src/lb/load-balancer.js';
import { HostFlag, type Host, type Locality } from '../../../src/cluster/host.js';
import { seededRng, systemClock } from '../../../src/common/clock.js';
import { host, lbConfig } from '../../helpers/lb.js';

// ring_hash / maglev with locality-weighted LB (Envoy's ThreadAwareLoadBalancerBase): no per-request
// locality pick; host weights are normalized within the locality and multiplied by the locality
// weight, and one ring / table is built per host set. The hash key alone picks the host.

const loc = (zone: string): Locality => ({ region: 'r', zone, subzone: '' });
const local = loc('a');
const POLICIES = ['ring_hash', 'maglev'] as const;

function zoneHosts(zone: string, n: number, o: Partial<Host> = {}): Host[] {
  return Array.from({ length: n }, (_, i) => host(`10.${zone.charCodeAt(0)}.0.${i}:80`, { locality: loc(zone), ...o }));
}

function build(hosts: Host[], lb: Record<string, unknown>, seed = 1) {
  return createLoadBalancer({
    hosts,
    config: lbConfig(lb),
    localLocality: local,
    clock: systemClock,
    rng: seededRng(seed),
  });
}

const weighted = (policy: string, weights: Record<string, number>, extra: Record<string, unknown> = {}) => ({
  policy,
  localityWeighted: true,
  localityWeights: Object.entries(weights).map(([zone, weight]) => ({ locality: { zone }, weight })),
  ...extra,
});

function shareByZone(lb: ReturnType<typeof build>, keys: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < keys; i++) {
    const z = lb.pick({ hashKey: `user-${i}` })!.locality.zone;
    out[z] = (out[z] ?? 0) + 1;
  }
  for (const z of Object.keys(out)) out[z] = out[z] / keys;
  return out;
}

describe.each(POLICIES)('%s with locality-weighted LB', (policy) => {
  it('the same key always maps to the same host over consecutive picks', () => {
    const hs = [...zoneHosts('a', 3), ...zoneHosts('b', 5), ...zoneHosts('c', 2)];
    const lb = build(hs, weighted(policy, { a: 1, b: 2, c: 3 }));
    for (let k = 0; k < 200; k++) {
      const key = { hashKey: `user-${k}` };
      const first = lb.pick(key);
      // Before the fix the locality came from an EDF rotation, so consecutive picks of one key
      // visited a different locality each time.
      for (let i = 0; i < 12; i++) expect(lb.pick(key)).toBe(first);
    }
  });

  it('stays sticky across priorities, degraded hosts and with zone-aware routing configured', () => {
    // P0: 6 healthy over zones a and e, 4 failed, 4 degraded over zones c and f; P1: 1 of 10 healthy.
    // Loads: healthy 60 (P0) / 14 (P1), degraded 26 (P0), so keys spread over three host sets.
    const hs = [
      ...zoneHosts('a', 4),
      ...zoneHosts('e', 2),
      ...zoneHosts('b', 4, { flags: HostFlag.FAILED_ACTIVE_HC }),
      ...zoneHosts('c', 2, { flags: HostFlag.DEGRADED_ACTIVE_HC }),
      ...zoneHosts('f', 2, { flags: HostFlag.DEGRADED_ACTIVE_HC }),
      ...zoneHosts('d', 1, { priority: 1 }),
      ...zoneHosts('g', 9, { priority: 1, flags: HostFlag.FAILED_ACTIVE_HC }),
    ];
    const lb = build(
      hs,
      weighted(
        policy,
        { a: 1, b: 1, c: 1, d: 1, e: 2, f: 3, g: 1 },
        { zoneAware: { enabled: true, minClusterSize: 1, originShares: { a: 10, e: 90 } } },
      ),
    );
    expect(lb.state().healthyPriorityLoad).toEqual([60, 14]);
    expect(lb.state().degradedPriorityLoad).toEqual([26, 0]);
    const seen = new Set<string>();
    for (let k = 0; k < 300; k++) {
      const key = { hashKey: `s-${k}` };
      const first = lb.pick(key)!;
      seen.add(first.locality.zone);
      for (let i = 0; i < 8; i++) expect(lb.pick(key)).toBe(first);
    }
    expect([...seen].sort()).toEqual(['a', 'c', 'd', 'e', 'f']);
  });

  it('gives each locality its weight share whatever its host count (1 host at weight 1 vs 9 at weight 3 -> 25 %)', () => {
    const hs = [...zoneHosts('a', 1), ...zoneHosts('b', 9)];
    const s = shareByZone(build(hs, weighted(policy, { a: 1, b: 3 })), 20000);
    expect(s.a).toBeGreaterThan(0.23);
    expect(s.a).toBeLessThan(0.27);
  });

  it('splits a locality share by host weight (host weights 1:3 within a locality of weight 1, against 1)', () => {
    const hs = [
      host('x1:80', { locality: loc('a') }),
      host('x3:80', { locality: loc('a'), weight: 3 }),
      ...zoneHosts('b', 4),
    ];
    const lb = build(hs, weighted(policy, { a: 1, b: 1 }));
    let x1 = 0;
    let x3 = 0;
    for (let i = 0; i < 20000; i++) {
      const a = lb.pick({ hashKey: `w-${i}` })!.address;
      if (a === 'x1:80') x1++;
      if (a === 'x3:80') x3++;
    }
    expect(x1 / 20000).toBeCloseTo(0.125, 1);
    expect(x3 / 20000).toBeCloseTo(0.375, 1);
  });

  it('keeps a locality share when some of its hosts fail (no overprovisioning adjustment, as Envoy), never picking them', () => {
    const hs = [...zoneHosts('a', 4), ...zoneHosts('b', 4)];
    hs[0].flags = HostFlag.FAILED_ACTIVE_HC;
    hs[1].flags = HostFlag.FAILED_ACTIVE_HC;
    const lb = build(hs, weighted(policy, { a: 1, b: 1 }, { panicThreshold: 0 }));
    const s = shareByZone(lb, 20000);
    expect(s.a).toBeGreaterThan(0.47);
    expect(s.a).toBeLessThan(0.53);
    for (let i = 0; i < 2000; i++) expect(lb.pick({ hashKey: `u-${i}` })!.flags).toBe(0);
  });

  it('sends nothing to a locality of weight 0', () => {
    const hs = [...zoneHosts('a', 3), ...zoneHosts('b', 3)];
    const s = shareByZone(build(hs, weighted(policy, { a: 0, b: 1 })), 5000);
    expect(s.a).toBeUndefined();
    expect(s.b).toBe(1);
  });
});

describe('key movement when one host fails (locality-weighted)', () => {
  const N = 90;
  const zones = 'abcdefghi';
  const cluster = () => Array.from({ length: N }, (_, i) => host(`10.2.${i}.1:80`, { locality: loc(zones[i % 9]) }));
  const cfg = (policy: string) => ({
    ...weighted(policy, { a: 3, b: 3, c: 3, d: 2, e: 2, f: 2, g: 1, h: 1, i: 1 }),
    panicThreshold: 0,
  });

  function moved(policy: string) {
    const before = build(cluster(), cfg(policy));
    const hs = cluster();
    hs[13].flags = HostFlag.FAILED_OUTLIER_CHECK;
    const after = build(hs, cfg(policy));
    const keys = 40000;
    let n = 0;
    let fromFailed = 0;
    for (let i = 0; i < keys; i++) {
      const k = { hashKey: `m-${i}` };
      const a = before.pick(k)!;
      const b = after.pick(k)!;
      if (a.address === '10.2.13.1:80') fromFailed++;
      if (a !== b && a.address !== b.address) n++;
    }
    return { moved: n / keys, fromFailed: fromFailed / keys };
  }

  it("ring_hash: the failed host's keys plus about as many again (its locality-mates take its share): ~2/N", () => {
    const r = moved('ring_hash');
    expect(r.fromFailed).toBeGreaterThan(0);
    expect(r.moved).toBeGreaterThanOrEqual(r.fromFailed);
    expect(r.moved).toBeLessThan(3 / N);
  });

  it('maglev: a few times 1/N (maglev churn)', () => {
    const r = moved('maglev');
    expect(r.moved).toBeGreaterThanOrEqual(r.fromFailed);
    expect(r.moved).toBeLessThan(5 / N);
  });
});

describe('hash key edge cases', () => {
  it('an empty-string hash key is a key like any other (sticky, not random)', () => {
    for (const policy of POLICIES) {
      const lb = build(zoneHosts('a', 8), { policy });
      const first = lb.pick({ hashKey: '' });
      for (let i = 0; i < 20; i++) expect(lb.pick({ hashKey: '' })).toBe(first);
    }
  });
});

describe('table reuse across rebuilds of one cluster', () => {
  // createLoadBalancer keeps the rings / tables of the previous build per config object and reuses the
  // ones whose host set is unchanged; a reused table must map exactly as a fresh one.
  const mapping = (lb: ReturnType<typeof createLoadBalancer>) =>
    Array.from({ length: 3000 }, (_, i) => lb.pick({ hashKey: `t-${i}` })!.address).join(',');

  it.each(POLICIES)('%s: every rebuild maps as a fresh build of the same hosts', (policy) => {
    const hs = [...zoneHosts('a', 5), ...zoneHosts('b', 5), ...zoneHosts('c', 6, { priority: 1 })];
    const lbCfg = { ...weighted(policy, { a: 2, b: 1, c: 1 }), panicThreshold: 0 };
    const shared = lbConfig(lbCfg);
    const viaShared = () =>
      createLoadBalancer({ hosts: hs, config: shared, localLocality: local, clock: systemClock, rng: seededRng(1) });
    const fresh = () => build(hs, lbCfg);
    const states: Array<() => void> = [
      () => undefined,
      () => (hs[1].flags = HostFlag.FAILED_OUTLIER_CHECK),
      () => (hs[7].flags = HostFlag.FAILED_ACTIVE_HC),
      () => (hs[12].flags = HostFlag.FAILED_ACTIVE_HC), // P1 changes, P0 reused
      () => (hs[1].flags = 0),
      () => (hs[3].flags = HostFlag.DEGRADED_ACTIVE_HC),
      () => {
        for (const h of hs) h.flags = 0;
      },
    ];
    for (const apply of states) {
      apply();
      expect(mapping(viaShared())).toBe(mapping(fresh()));
    }
  });
});
