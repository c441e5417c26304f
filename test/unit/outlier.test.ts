import { describe, it, expect } from 'vitest';
import { OutlierDetector } from '../../src/outlier/detector.js';
import { Outcome } from '../../src/outlier/outcome.js';
import { validateConfig } from '../../src/config/validate.js';
import { seededRng } from '../../src/common/clock.js';

function outlierConfig(o: Record<string, unknown> = {}) {
  const r = validateConfig({ clusters: [{ name: 'c', outlierDetection: o }] }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config.clusters[0].outlierDetection!;
}

function setup(n: number, o: Record<string, unknown> = {}) {
  const clock = {
    t: 0,
    now() {
      return this.t;
    },
  };
  let changes = 0;
  const d = new OutlierDetector('c', outlierConfig(o), clock, seededRng(1), () => changes++);
  const hosts = Array.from({ length: n }, (_, i) => `h${i}`);
  d.setHosts(hosts);
  return { d, clock, hosts, changes: () => changes };
}

const fives = (k: number) => Array(k).fill(Outcome.HTTP_5XX);
const SEC = 1000;

describe('outlier detection (fake clock)', () => {
  it('ejects after 5 consecutive 5xx, not after 4, and a success resets the count', () => {
    const { d } = setup(10);
    d.record('h0', [...fives(4), Outcome.SUCCESS, ...fives(4)]);
    expect(d.ejected().size).toBe(0);
    d.record('h0', fives(1));
    expect([...d.ejected()]).toEqual(['h0']);
  });

  it('returns the host on the first interval tick after 30 s, then doubles the next ejection', () => {
    const { d, clock } = setup(10);
    d.record('h0', fives(5));
    clock.t = 29 * SEC;
    d.tick();
    expect(d.ejected().has('h0')).toBe(true);
    clock.t = 30 * SEC;
    d.tick();
    expect(d.ejected().has('h0')).toBe(false);
    d.record('h0', fives(5));
    expect(d.status('h0')).toMatchObject({ ejected: true, ejections: 2, ejectedForMs: 60 * SEC });
    clock.t += 60 * SEC;
    d.tick();
    d.record('h0', fives(5));
    expect(d.status('h0')!.ejectedForMs).toBe(90 * SEC);
  });

  it('adds up to maxEjectionTimeJitter to each ejection, so hosts ejected together do not return together', () => {
    const { d } = setup(20, { maxEjectionTimeJitter: '10s', maxEjectionPercent: 100 });
    const times = Array.from({ length: 10 }, (_, i) => {
      d.record(`h${i}`, fives(5));
      return d.status(`h${i}`)!.ejectedForMs / SEC;
    });
    for (const t of times) {
      expect(t).toBeGreaterThanOrEqual(30);
      expect(t).toBeLessThanOrEqual(40);
    }
    expect(new Set(times).size).toBeGreaterThan(5);
  });

  it('caps the ejection time at maxEjectionTime', () => {
    const { d, clock } = setup(10, { maxEjectionTime: '100s' });
    const times: number[] = [];
    for (let i = 0; i < 6; i++) {
      d.record('h0', fives(5));
      times.push(d.status('h0')!.ejectedForMs / SEC);
      clock.t += d.status('h0')!.ejectedForMs;
      d.tick();
    }
    expect(times).toEqual([30, 60, 90, 100, 100, 100]);
  });

  it('decays the back-off multiplier by one per healthy interval', () => {
    const { d, clock } = setup(10);
    d.record('h0', fives(5));
    clock.t += 30 * SEC;
    d.tick(); // returns, multiplier stays 1
    d.tick(); // healthy interval: multiplier 1 -> 0
    d.record('h0', fives(5));
    expect(d.status('h0')!.ejectedForMs).toBe(30 * SEC);
  });

  it('max ejection percent 10 %: fewer than 10 hosts eject nothing; 10-19 hosts eject one', () => {
    const small = setup(9);
    small.d.record('h0', fives(5));
    expect(small.d.ejected().size).toBe(0);
    const ten = setup(10);
    ten.d.record('h0', fives(5));
    ten.d.record('h1', fives(5));
    expect(ten.d.ejected().size).toBe(1);
  });

  it('alwaysEjectOneHost allows one ejection in a small cluster', () => {
    const { d } = setup(3, { alwaysEjectOneHost: true });
    d.record('h0', fives(5));
    d.record('h1', fives(5));
    expect([...d.ejected()]).toEqual(['h0']);
  });

  it('gateway failures are detected but not enforced by default (enforcing 0 %)', () => {
    const { d } = setup(10, { consecutive5xx: 0 });
    d.record('h0', Array(5).fill(Outcome.GATEWAY_ERROR));
    expect(d.ejected().size).toBe(0);
    const enforced = setup(10, { consecutive5xx: 0, enforcingConsecutiveGatewayFailure: 100 });
    enforced.d.record('h0', Array(5).fill(Outcome.GATEWAY_ERROR));
    expect(enforced.d.ejected().size).toBe(1);
  });

  it('success rate: {50,100,100,100,100} -> mean 90, stdev 20, threshold 52: the host at 50 % is ejected', () => {
    const { d } = setup(10, { maxEjectionPercent: 100, consecutive5xx: 0, consecutiveGatewayFailure: 0 });
    const seq = (ok: number, bad: number) => [...Array(ok).fill(Outcome.SUCCESS), ...Array(bad).fill(Outcome.HTTP_5XX)];
    d.record('h0', seq(50, 50));
    for (const h of ['h1', 'h2', 'h3', 'h4']) d.record(h, seq(100, 0));
    d.tick();
    expect([...d.ejected()]).toEqual(['h0']);
  });

  it('success rate needs 5 hosts with 100 requests each', () => {
    const { d } = setup(10, { maxEjectionPercent: 100, consecutive5xx: 0, consecutiveGatewayFailure: 0 });
    d.record('h0', [...Array(50).fill(Outcome.SUCCESS), ...Array(50).fill(Outcome.HTTP_5XX)]);
    for (const h of ['h1', 'h2', 'h3']) d.record(h, Array(100).fill(Outcome.SUCCESS));
    d.record('h4', Array(99).fill(Outcome.SUCCESS));
    d.tick();
    expect(d.ejected().size).toBe(0);
  });

  it('failure percentage ejects at >= 85 % failures when enforcing', () => {
    const { d } = setup(10, {
      maxEjectionPercent: 100,
      consecutive5xx: 0,
      consecutiveGatewayFailure: 0,
      failurePercentage: { enforcing: 100 },
      successRate: { minimumHosts: 100 },
    });
    const seq = (ok: number, bad: number) => [...Array(ok).fill(Outcome.SUCCESS), ...Array(bad).fill(Outcome.HTTP_5XX)];
    d.record('h0', seq(7, 43));
    for (const h of ['h1', 'h2', 'h3', 'h4']) d.record(h, seq(50, 0));
    d.tick();
    expect([...d.ejected()]).toEqual(['h0']);
  });
  it('uneject() ends an ejection early (a passing active health check) and keeps the back-off multiplier', () => {
    const { d, clock } = setup(10, { maxEjectionPercent: 100 });
    d.record('h0', fives(5));
    expect(d.uneject('h0')).toBe(true);
    expect(d.ejected().size).toBe(0);
    expect(d.uneject('h0')).toBe(false);
    d.record('h0', fives(5));
    // Second ejection: 2 x base (the multiplier was not reset by the early return).
    clock.t += 59 * SEC;
    d.tick();
    expect([...d.ejected()]).toEqual(['h0']);
    clock.t += 2 * SEC;
    d.tick();
    expect(d.ejected().size).toBe(0);
  });
});
