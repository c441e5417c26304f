import { describe, it, expect } from 'vitest';
import type { LbConfig } from '../../../src/lb/types.js';
import { seededRng } from '../../../src/common/clock.js';
import { roundRobin } from '../../../src/lb/policies/round-robin.js';
import { leastRequest } from '../../../src/lb/policies/least-request.js';
import { random } from '../../../src/lb/policies/random.js';
import { ringHash } from '../../../src/lb/policies/ring-hash.js';
import { maglev } from '../../../src/lb/policies/maglev.js';
import { host, lbConfig } from '../../helpers/lb.js';

const hosts = (n: number) => Array.from({ length: n }, (_, i) => host(`10.0.0.${i}:80`, { index: i }));

describe('round robin', () => {
  it('rotates through equal-weight hosts', () => {
    const hs = hosts(3);
    const sel = roundRobin(hs, lbConfig(), seededRng(1));
    expect(Array.from({ length: 6 }, () => sel.pick(undefined)!.address)).toEqual(['10.0.0.0:80', '10.0.0.1:80', '10.0.0.2:80', '10.0.0.0:80', '10.0.0.1:80', '10.0.0.2:80']);
  });
  it('follows the exact EDF sequence for weights 2:1:1', () => {
    const hs = [host('a', { weight: 2 }), host('b'), host('c')];
    const sel = roundRobin(hs, lbConfig(), seededRng(1));
    // Deadlines advance by 1/weight; ties go to the host scheduled earliest.
    expect(Array.from({ length: 12 }, () => sel.pick(undefined)!.address).join('')).toBe('abcaabcaabca');
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
    for (let i = 0; i < 20000; i++) if (a.pick({ hashKey: `k${i}` })!.address !== b.pick({ hashKey: `k${i}` })!.address) moved++;
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
