import { describe, it, expect } from 'vitest';
import type { LbConfig } from '../../../src/lb/types.js';
import { seededRng } from '../../../src/common/clock.js';
import { roundRobin } from '../../../src/lb/policies/round-robin.js';
import { leastRequest } from '../../../src/lb/policies/least-request.js';
import { random } from '../../../src/lb/policies/random.js';
import { ringHash } from '../../../src/lb/policies/ring-hash.js';
import { maglev } from '../../../src/lb/policies/maglev.js';
import { EdfScheduler } from '../../../src/lb/edf.js';
import { createLoadBalancer } from '../../../src/lb/load-balancer.js';
import { murmur3 } from '../../../src/common/hash.js';
import { systemClock } from '../../../src/common/clock.js';
import type { Host } from '../../../src/cluster/host.js';
import { host, lbConfig } from '../../helpers/lb.js';

const hosts = (n: number) => Array.from({ length: n }, (_, i) => host(`10.0.0.${i}:80`, { index: i }));

/** An rng that returns the given values in turn (then the last one forever). */
const fixedRng = (...values: number[]) => {
  let i = 0;
  return { random: () => values[Math.min(i++, values.length - 1)] };
};
const seq = (sel: { pick(ctx: undefined): { address: string } | undefined }, n: number) =>
  Array.from({ length: n }, () => sel.pick(undefined)!.address);

describe('round robin', () => {
  it('rotates through equal-weight hosts from the start the rng draws (start 0 for a draw of 0)', () => {
    const hs = hosts(3);
    expect(seq(roundRobin(hs, lbConfig(), fixedRng(0)), 6)).toEqual([
      '10.0.0.0:80',
      '10.0.0.1:80',
      '10.0.0.2:80',
      '10.0.0.0:80',
      '10.0.0.1:80',
      '10.0.0.2:80',
    ]);
    // floor(0.5 x 3) = 1, floor(0.9 x 3) = 2: same rotation, shifted.
    expect(seq(roundRobin(hs, lbConfig(), fixedRng(0.5)), 4)).toEqual([
      '10.0.0.1:80',
      '10.0.0.2:80',
      '10.0.0.0:80',
      '10.0.0.1:80',
    ]);
    expect(seq(roundRobin(hs, lbConfig(), fixedRng(0.9)), 4)).toEqual([
      '10.0.0.2:80',
      '10.0.0.0:80',
      '10.0.0.1:80',
      '10.0.0.2:80',
    ]);
  });
  it('seeds a random start per build, so rebuilt LBs (one per worker) do not move in lock-step', () => {
    const hs = hosts(10);
    const firsts = new Set<string>();
    for (let seed = 1; seed <= 40; seed++)
      firsts.add(roundRobin(hs, lbConfig(), seededRng(seed)).pick(undefined)!.address);
    // Before the fix every build started at host 0.
    expect(firsts.size).toBeGreaterThan(5);
    // Deterministic for a given rng: the start is floor(first draw x n).
    const start = Math.floor(seededRng(7).random() * 10);
    expect(roundRobin(hs, lbConfig(), seededRng(7)).pick(undefined)).toBe(hs[start]);
  });
  it('follows the exact EDF sequence for weights 2:1:1 from the start (a draw of 0)', () => {
    const hs = [host('a', { weight: 2 }), host('b'), host('c')];
    const sel = roundRobin(hs, lbConfig(), fixedRng(0));
    // Deadlines advance by 1/weight; ties go to the host scheduled earliest.
    expect(seq(sel, 12).join('')).toBe('abcaabcaabca');
  });
  it('weighted: a draw of r starts floor(r x Σweights) picks into the same schedule', () => {
    const hs = [host('a', { weight: 2 }), host('b'), host('c')];
    const full = 'abca'.repeat(4);
    for (let k = 0; k < 4; k++) {
      const sel = roundRobin(hs, lbConfig(), fixedRng((k + 0.5) / 4));
      expect(seq(sel, 8).join('')).toBe(full.slice(k, k + 8));
    }
  });
  it('weighted 3:1:1 from a seeded start keeps the exact a a b c a cycle', () => {
    const hs = [host('a', { weight: 3 }), host('b'), host('c')];
    // a is due at 1/3, 2/3, 1; b and c at 1; at the tie b and c were scheduled before a's third turn.
    expect(seq(roundRobin(hs, lbConfig(), fixedRng(0)), 10).join('')).toBe('aabcaaabca');
    for (const r of [0.2, 0.45, 0.7, 0.99]) {
      const picks = Math.floor(r * 5);
      expect(seq(roundRobin(hs, lbConfig(), fixedRng(r)), 10).join('')).toBe(
        'aabca'.repeat(3).slice(picks, picks + 10),
      );
    }
  });
  it('skips the previous host on a retry when another exists', () => {
    const hs = hosts(2);
    const sel = roundRobin(hs, lbConfig(), seededRng(1));
    for (let i = 0; i < 4; i++) expect(sel.pick({ accept: (h) => h !== hs[0] })).toBe(hs[1]);
  });
});

describe('least request', () => {
  it('prefers idle hosts (power of two choices)', () => {
    const hs = hosts(4);
    hs[0].activeRequests = 10;
    hs[1].activeRequests = 10;
    hs[2].activeRequests = 10;
    const sel = leastRequest(hs, lbConfig({ policy: 'least_request' }), seededRng(7));
    const counts = new Map<string, number>();
    for (let i = 0; i < 10000; i++) {
      const h = sel.pick(undefined)!;
      counts.set(h.address, (counts.get(h.address) ?? 0) + 1);
    }
    // The idle host wins whenever it is one of the two draws: 1 - (3/4)^2 = 43.75 %.
    expect(counts.get('10.0.0.3:80')! / 10000).toBeCloseTo(0.4375, 1);
  });
  it('weights by weight / (active + 1)^bias when weights differ', () => {
    const hs = [host('a', { weight: 2, activeRequests: 4 }), host('b', { weight: 1, activeRequests: 0 })];
    const sel = leastRequest(hs, lbConfig({ policy: 'least_request' }), seededRng(1));
    const n = { a: 0, b: 0 } as Record<string, number>;
    for (let i = 0; i < 1400; i++) n[sel.pick(undefined)!.address]++;
    // Effective weights 0.4 and 1.0 -> a gets 0.4/1.4 = 28.6 %.
    expect(n.a / 1400).toBeCloseTo(0.286, 1);
  });
});

describe('random', () => {
  it('spreads uniformly', () => {
    const hs = hosts(4);
    const sel = random(hs, lbConfig(), seededRng(3));
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[sel.pick(undefined)!.index]++;
    for (const c of counts) expect(Math.abs(c / 20000 - 0.25)).toBeLessThan(0.02);
  });
});

function movedShare(build: typeof ringHash, cfg: LbConfig) {
  const before = hosts(10);
  const after = before.slice(0, 9);
  const a = build(before, cfg, seededRng(1));
  const b = build(after, cfg, seededRng(1));
  let moved = 0;
  const keys = 20000;
  for (let i = 0; i < keys; i++) {
    const k = `user-${i}`;
    const x = a.pick({ hashKey: k })!.address;
    const y = b.pick({ hashKey: k })!.address;
    if (x !== y) moved++;
  }
  return moved / keys;
}

describe('consistent hashing', () => {
  it('ring hash: the same key always lands on the same host', () => {
    const sel = ringHash(hosts(5), lbConfig({ policy: 'ring_hash' }), seededRng(1));
    const first = sel.pick({ hashKey: 'alice' });
    for (let i = 0; i < 20; i++) expect(sel.pick({ hashKey: 'alice' })).toBe(first);
  });
  it('ring hash: removing 1 of 10 hosts moves about 1/10 of the keys', () => {
    const share = movedShare(ringHash, lbConfig({ policy: 'ring_hash' }));
    expect(share).toBeGreaterThan(0.05);
    expect(share).toBeLessThan(0.16);
  });
  it('maglev: removing 1 of 10 hosts moves about 1/10 of keys (plus maglev churn)', () => {
    const cfg = lbConfig({ policy: 'maglev' });
    const before = hosts(10);
    const a = maglev(before, cfg, seededRng(1));
    const b = maglev(before.slice(0, 9), cfg, seededRng(1));
    let moved = 0;
    for (let i = 0; i < 20000; i++)
      if (a.pick({ hashKey: `k${i}` })!.address !== b.pick({ hashKey: `k${i}` })!.address) moved++;
    expect(moved / 20000).toBeGreaterThan(0.08);
    expect(moved / 20000).toBeLessThan(0.25);
  });
  it('maglev: weights 1:2 fill about 1/3 and 2/3 of the 65537 entries', () => {
    const hs = [host('a'), host('b', { weight: 2 })];
    const sel = maglev(hs, lbConfig({ policy: 'maglev' }), seededRng(1));
    let a = 0;
    for (let i = 0; i < 30000; i++) if (sel.pick({ hashKey: `key-${i}` })!.address === 'a') a++;
    expect(a / 30000).toBeCloseTo(1 / 3, 1);
  });
});

describe('EDF scheduler with a random start (Envoy createWithPicks)', () => {
  const fresh = (items: string[], ws: number[], k: number) => {
    const edf = new EdfScheduler<string>();
    items.forEach((it, i) => edf.add(it, ws[i]));
    for (let i = 0; i < k; i++) edf.pick();
    return edf;
  };
  const letters = (ws: number[]) => ws.map((_, i) => String.fromCharCode(97 + i));
  const run = (edf: EdfScheduler<string>, n: number) => Array.from({ length: n }, () => edf.pick()).join('');

  it('is in exactly the state of k picks from an empty scheduler (weights with exact reciprocals)', () => {
    for (const ws of [
      [2, 1, 1],
      [4, 2, 1, 1],
      [8, 1],
      [1, 1, 1, 1, 2],
      [16, 4, 4, 2, 1],
    ]) {
      for (let k = 0; k < 60; k++) {
        expect(`${ws.join(':')} k=${k} ${run(EdfScheduler.withPicks(letters(ws), ws, k), 40)}`).toBe(
          `${ws.join(':')} k=${k} ${run(fresh(letters(ws), ws, k), 40)}`,
        );
      }
    }
  });
  it('matches k picks from empty up to floating-point ties for other weights (per-item counts within 1)', () => {
    for (const ws of [
      [3, 1, 1],
      [25, 75],
      [5, 3, 2, 7],
      [0.4, 1, 2.5],
    ]) {
      for (let k = 0; k < 60; k += 7) {
        const a = run(fresh(letters(ws), ws, k), 200);
        const b = run(EdfScheduler.withPicks(letters(ws), ws, k), 200);
        for (const it of letters(ws)) expect(Math.abs(a.split(it).length - b.split(it).length)).toBeLessThanOrEqual(1);
      }
    }
  });
});

/** The ring and table as built before the typed-array rewrite (object entries, template strings). */
function referenceRing(hs: Host[], cfg: LbConfig) {
  const totalWeight = hs.reduce((s, h) => s + h.weight, 0);
  const perWeight = Math.min(
    Math.max(160, Math.ceil(cfg.ringHash.minRingSize / totalWeight)),
    Math.floor(cfg.ringHash.maxRingSize / totalWeight),
  );
  const entries: Array<{ hash: number; host: Host }> = [];
  for (const h of hs)
    for (let i = 0; i < Math.max(1, perWeight * h.weight); i++)
      entries.push({ hash: murmur3(`${h.address}_${i}`), host: h });
  entries.sort((a, b) => a.hash - b.hash);
  return (key: string) => {
    const k = murmur3(key);
    const e = entries.find((x) => x.hash >= k) ?? entries[0];
    return e.host;
  };
}
function referenceMaglev(hs: Host[], m: number) {
  const table = new Array<Host | undefined>(m);
  const offset = hs.map((h) => murmur3(h.address, 0x9747b28c) % m);
  const skip = hs.map((h) => (murmur3(h.address, 0x5bd1e995) % (m - 1)) + 1);
  const next = hs.map(() => 0);
  const maxWeight = hs.reduce((x, h) => Math.max(x, h.weight), 0);
  const credit = hs.map(() => 0);
  let filled = 0;
  while (filled < m) {
    for (let i = 0; i < hs.length && filled < m; i++) {
      credit[i] += hs[i].weight / maxWeight;
      if (credit[i] < 1) continue;
      credit[i] -= 1;
      let slot = (offset[i] + next[i] * skip[i]) % m;
      while (table[slot] !== undefined) slot = (offset[i] + ++next[i] * skip[i]) % m;
      table[slot] = hs[i];
      next[i]++;
      filled++;
    }
  }
  return (key: string) => table[murmur3(key) % m]!;
}

describe('typed-array ring and table build the same mapping as before', () => {
  const mixed = () =>
    Array.from({ length: 37 }, (_, i) =>
      host(`10.1.${i}.${(i * 7) % 256}:${8000 + i}${i % 3 ? '' : 'x'}`, { weight: 1 + (i % 4) }),
    );
  it('ring hash: every key maps to the same host as the object/template-string ring', () => {
    const hs = mixed();
    const cfg = lbConfig({ policy: 'ring_hash' });
    const ref = referenceRing(hs, cfg);
    const sel = ringHash(hs, cfg, seededRng(1));
    for (let i = 0; i < 3000; i++) expect(sel.pick({ hashKey: `k${i}` })).toBe(ref(`k${i}`));
  });
  it('maglev: every key maps to the same host as the Host[] table', () => {
    const hs = mixed();
    const cfg = lbConfig({ policy: 'maglev', maglev: { tableSize: 5003 } });
    const ref = referenceMaglev(hs, 5003);
    const sel = maglev(hs, cfg, seededRng(1));
    for (let i = 0; i < 3000; i++) expect(sel.pick({ hashKey: `k${i}` })).toBe(ref(`k${i}`));
  });
});

describe('very large host lists', () => {
  // Math.max(...array) throws RangeError (call stack) past ~120k elements.
  const many = (n: number) =>
    Array.from({ length: n }, (_, i) => host(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:80`, { index: i }));
  it('createLoadBalancer builds and picks over 200k hosts', () => {
    const hs = many(200_000);
    const lb = createLoadBalancer({
      hosts: hs,
      config: lbConfig(),
      localLocality: { region: '', zone: '', subzone: '' },
      clock: systemClock,
      rng: seededRng(1),
    });
    expect(lb.pick(undefined)).toBeDefined();
    expect(lb.state().healthyPriorityLoad).toEqual([100]);
  });
  it('maglev builds its table over 200k hosts (more hosts than slots: each slot still has a host)', () => {
    const hs = many(200_000);
    const sel = maglev(hs, lbConfig({ policy: 'maglev' }), seededRng(1));
    for (let i = 0; i < 100; i++) expect(sel.pick({ hashKey: `k${i}` })).toBeDefined();
  });
});
