import { describe, it, expect } from 'vitest';
import { createLoadBalancer } from '../../../src/lb/load-balancer.js';
import { HostFlag, type Host, type Locality } from '../../../src/cluster/host.js';
import { seededRng, systemClock } from '../../../src/common/clock.js';
import { host, lbConfig } from '../../helpers/lb.js';
import { zoneAwareSplit, effectivePriorities, localityDistance } from '../../../src/lb/locality.js';

const loc = (region: string, zone = '', subzone = ''): Locality => ({ region, zone, subzone });
const local = loc('us-east', 'us-east-1a');

function build(hosts: Host[], lb: Record<string, unknown> = {}, seed = 1) {
  return createLoadBalancer({
    hosts,
    config: lbConfig(lb),
    localLocality: local,
    clock: systemClock,
    rng: seededRng(seed),
  });
}

function shares(lb: ReturnType<typeof build>, n: number, key: (h: Host) => string) {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const h = lb.pick(undefined);
    const k = h ? key(h) : 'none';
    out[k] = (out[k] ?? 0) + 1;
  }
  for (const k of Object.keys(out)) out[k] = Math.round((1000 * out[k]) / n) / 10;
  return out;
}

const level = (p: number, n: number, healthy: number, extra: Partial<Host> = {}) =>
  Array.from({ length: n }, (_, i) =>
    host(`p${p}-${i}`, { priority: p, flags: i < healthy ? 0 : HostFlag.FAILED_ACTIVE_HC, ...extra }),
  );

describe('createLoadBalancer', () => {
  it('sends ~70/30 to P0/P1 when half of P0 is healthy (10000 seeded picks)', () => {
    const lb = build([...level(0, 10, 5), ...level(1, 10, 10)]);
    const s = shares(lb, 10000, (h) => `P${h.priority}`);
    expect(Math.abs(s.P0 - 70)).toBeLessThanOrEqual(1);
    expect(Math.abs(s.P1 - 30)).toBeLessThanOrEqual(1);
    expect(lb.state().healthyPriorityLoad).toEqual([70, 30]);
  });

  it('moves a retry to the next priority when every host of the chosen one was already tried', () => {
    const p0 = level(0, 2, 2);
    const lb = build([...p0, ...level(1, 2, 2)]);
    expect(lb.state().healthyPriorityLoad).toEqual([100, 0]);
    for (let i = 0; i < 200; i++) {
      const h = lb.pick({ accept: (x) => !p0.includes(x) })!;
      expect(h.priority).toBe(1);
    }
    // Only one P0 host tried: the retry stays in P0, on the other host.
    for (let i = 0; i < 200; i++) expect(lb.pick({ accept: (x) => x !== p0[0] })).toBe(p0[1]);
  });

  it('never picks an unhealthy host outside panic', () => {
    const lb = build([...level(0, 10, 5), ...level(1, 10, 10)]);
    for (let i = 0; i < 2000; i++) expect(lb.pick(undefined)!.flags).toBe(0);
  });

  it('in panic balances over all hosts of the level, healthy or not', () => {
    const lb = build(level(0, 10, 2));
    expect(lb.state().panic).toEqual([true]);
    const s = shares(lb, 10000, (h) => (h.flags ? 'unhealthy' : 'healthy'));
    expect(Math.abs(s.unhealthy - 80)).toBeLessThan(2);
  });

  it('with panic disabled and nothing healthy, picks nothing (503)', () => {
    const lb = build(level(0, 3, 0), { panicThreshold: 0 });
    expect(lb.pick(undefined)).toBeUndefined();
  });

  it('uses degraded hosts only for the share healthy hosts cannot carry', () => {
    const hs = [...level(0, 100, 25), ...Array.from({ length: 0 }, () => host('x'))];
    for (let i = 25; i < 90; i++) hs[i].flags = HostFlag.DEGRADED_ACTIVE_HC;
    const lb = build(hs);
    expect(lb.state().healthyPriorityLoad).toEqual([35]);
    expect(lb.state().degradedPriorityLoad).toEqual([65]);
    const s = shares(lb, 10000, (h) => (h.flags ? 'degraded' : 'healthy'));
    expect(Math.abs(s.degraded - 65)).toBeLessThanOrEqual(1.5);
  });

  it('priorityFromLocality orders hosts by distance: zone, region, elsewhere', () => {
    const hs = [
      host('a', { locality: loc('eu-west', 'eu-west-1a') }),
      host('b', { locality: loc('us-east', 'us-east-1b') }),
      host('c', { locality: local }),
    ];
    const lb = build(hs, { priorityFromLocality: true });
    expect(lb.state().hostPriority).toEqual([2, 1, 0]);
    for (let i = 0; i < 50; i++) expect(lb.pick(undefined)!.address).toBe('c');
    hs[2].flags = HostFlag.FAILED_OUTLIER_CHECK;
    const lb2 = build(hs, { priorityFromLocality: true });
    for (let i = 0; i < 50; i++) expect(lb2.pick(undefined)!.address).toBe('b');
  });

  it('computes Istio-style locality distances', () => {
    expect(localityDistance(loc('r', 'z', 's'), loc('r', 'z', 's'))).toBe(0);
    expect(localityDistance(loc('r', 'z', 's'), loc('r', 'z', 't'))).toBe(1);
    expect(localityDistance(loc('r', 'z', 's'), loc('r', 'y', 's'))).toBe(2);
    expect(localityDistance(loc('r', 'z', 's'), loc('q', 'z', 's'))).toBe(3);
  });

  it('failoverPriority ranks hosts matching more leading labels first', () => {
    const hs = [
      host('a', { labels: { net: 'n1', cluster: 'c2' } }),
      host('b', { labels: { net: 'n1', cluster: 'c1' } }),
      host('c', { labels: { net: 'n2', cluster: 'c1' } }),
    ];
    const prio = effectivePriorities(hs, lbConfig({ failoverPriority: ['net', 'cluster'] }), local, {
      net: 'n1',
      cluster: 'c1',
    });
    expect(prio).toEqual([1, 0, 2]);
  });

  it('locality-weighted: X (weight 1) with 1 of 2 healthy gets 0.7/2.7 = 25.9 % against Y (weight 2)', () => {
    const x = loc('r', 'x');
    const y = loc('r', 'y');
    const hs = [
      host('x1', { locality: x }),
      host('x2', { locality: x, flags: HostFlag.FAILED_ACTIVE_HC }),
      host('y1', { locality: y }),
      host('y2', { locality: y }),
    ];
    const lb = build(hs, {
      localityWeighted: true,
      localityWeights: [
        { locality: { zone: 'x' }, weight: 1 },
        { locality: { zone: 'y' }, weight: 2 },
      ],
    });
    const s = shares(lb, 27000, (h) => h.locality.zone);
    expect(Math.abs(s.x - 25.9)).toBeLessThan(0.5);
  });

  it('locality-weighted table: X at 100/70/69/50/25/0 % healthy', () => {
    const expected: Array<[number, number]> = [
      [100, 33.3],
      [70, 33.3],
      [69, 32.6],
      [50, 25.9],
      [25, 14.9],
      [0, 0],
    ];
    for (const [pct, toX] of expected) {
      const hs = [
        ...Array.from({ length: 100 }, (_, i) =>
          host(`x${i}`, { locality: loc('r', 'x'), flags: i < pct ? 0 : HostFlag.FAILED_ACTIVE_HC }),
        ),
        ...Array.from({ length: 10 }, (_, i) => host(`y${i}`, { locality: loc('r', 'y') })),
      ];
      const lb = build(hs, {
        localityWeighted: true,
        panicThreshold: 0,
        localityWeights: [
          { locality: { zone: 'x' }, weight: 1 },
          { locality: { zone: 'y' }, weight: 2 },
        ],
      });
      const s = shares(lb, 30000, (h) => h.locality.zone);
      expect(Math.abs((s.x ?? 0) - toX)).toBeLessThan(0.5);
    }
  });
});

describe('zone-aware routing (Envoy zone_aware.rst)', () => {
  const cfg = (originShares: Record<string, number>) =>
    lbConfig({ zoneAware: { enabled: true, minClusterSize: 6, originShares } });

  it('worked example: origin 40/40/20, upstream 25/50/25 -> 62.5 % local, residual 2:1', () => {
    const split = zoneAwareSplit(
      new Map([
        ['a', 25],
        ['b', 50],
        ['c', 25],
      ]),
      'a',
      cfg({ a: 40, b: 40, c: 20 }),
    )!;
    expect(split.local).toBeCloseTo(0.625, 6);
    expect(split.residual).toEqual([
      ['b', expect.closeTo(0.1, 6)],
      ['c', expect.closeTo(0.05, 6)],
    ]);
  });

  it('routes all local traffic locally when the upstream local share covers the origin share', () => {
    expect(
      zoneAwareSplit(
        new Map([
          ['a', 5],
          ['b', 5],
        ]),
        'a',
        cfg({ a: 50, b: 50 }),
      ),
    ).toEqual({ local: 1, residual: [] });
  });

  it('does not zone-route below minClusterSize healthy hosts', () => {
    expect(
      zoneAwareSplit(
        new Map([
          ['a', 2],
          ['b', 3],
        ]),
        'a',
        cfg({ a: 50, b: 50 }),
      ),
    ).toBeUndefined();
  });

  it('end to end: 62.5 / 25 / 12.5 over seeded picks', () => {
    const z = (zone: string, n: number) =>
      Array.from({ length: n }, (_, i) => host(`${zone}${i}`, { locality: loc('us-east', zone) }));
    const hs = [...z('us-east-1a', 25), ...z('b', 50), ...z('c', 25)];
    const lb = createLoadBalancer({
      hosts: hs,
      config: cfg({ 'us-east-1a': 40, b: 40, c: 20 }),
      localLocality: local,
      clock: systemClock,
      rng: seededRng(5),
    });
    const s = shares(lb, 40000, (h) => h.locality.zone);
    expect(Math.abs(s['us-east-1a'] - 62.5)).toBeLessThan(1);
    expect(Math.abs(s.b - 25)).toBeLessThan(1);
    expect(Math.abs(s.c - 12.5)).toBeLessThan(1);
  });
});
