import { describe, it, expect } from 'vitest';
import { CircuitBreaker } from '../../../src/pool/circuit-breaker.js';
import { validateConfig } from '../../../src/config/validate.js';
import { registry } from '../../../src/observability/metrics.js';

/** The validated (defaults applied) circuitBreakers block of a cluster. */
function breakerConfig(cb: Record<string, unknown> = {}) {
  const r = validateConfig({ clusters: [{ name: 'c', circuitBreakers: cb }] }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config.clusters[0].circuitBreakers;
}

let seq = 0;
/** A breaker on a cluster name of its own, so overflow counts of other tests do not mix in. */
function breaker(cb: Record<string, unknown> = {}) {
  const cluster = `cb-test-${++seq}`;
  return { b: new CircuitBreaker(cluster, breakerConfig(cb)), cluster };
}

async function overflowCount(cluster: string, limit: string): Promise<number> {
  const m = registry.getSingleMetric('meridian_circuit_breaker_overflow_total');
  if (!m) return 0;
  const { values } = await m.get();
  return values.find((v) => v.labels.cluster === cluster && v.labels.limit === limit)?.value ?? 0;
}

/** Call `take` n times; returns how many succeeded. */
const takeN = (n: number, take: () => boolean) => Array.from({ length: n }, take).filter(Boolean).length;

describe('CircuitBreaker fixed caps', () => {
  it("defaults are Envoy's: 1024 requests, 1024 pending, 3 retries", () => {
    const { b } = breaker();
    expect(takeN(1030, () => b.tryRequest())).toBe(1024);
    expect(takeN(1030, () => b.tryPending())).toBe(1024);
    expect(takeN(10, () => b.tryRetry())).toBe(3);
  });

  it('maxRequests: succeeds up to the cap, refuses after, a release frees exactly one slot; overflow is counted', async () => {
    const { b, cluster } = breaker({ maxRequests: 3 });
    expect([b.tryRequest(), b.tryRequest(), b.tryRequest()]).toEqual([true, true, true]);
    expect(b.requests).toBe(3);
    expect(b.tryRequest()).toBe(false);
    expect(b.tryRequest()).toBe(false);
    expect(b.requests).toBe(3);
    expect(await overflowCount(cluster, 'max_requests')).toBe(2);
    b.releaseRequest();
    expect(b.tryRequest()).toBe(true);
    expect(b.tryRequest()).toBe(false);
    expect(await overflowCount(cluster, 'max_requests')).toBe(3);
    // Other limits were not charged.
    expect(await overflowCount(cluster, 'max_pending_requests')).toBe(0);
    expect(await overflowCount(cluster, 'max_retries')).toBe(0);
  });

  it('maxPendingRequests: same cap semantics, counted under max_pending_requests; 0 refuses every pending request', async () => {
    const { b, cluster } = breaker({ maxPendingRequests: 2 });
    expect(takeN(5, () => b.tryPending())).toBe(2);
    expect(await overflowCount(cluster, 'max_pending_requests')).toBe(3);
    b.releasePending();
    b.releasePending();
    expect(b.pending).toBe(0);
    expect(takeN(5, () => b.tryPending())).toBe(2);
    expect(await overflowCount(cluster, 'max_requests')).toBe(0);

    const zero = breaker({ maxPendingRequests: 0 });
    expect(zero.b.tryPending()).toBe(false);
    expect(await overflowCount(zero.cluster, 'max_pending_requests')).toBe(1);
  });

  it('maxRetries: fixed cap independent of the number of active requests', async () => {
    const { b, cluster } = breaker({ maxRetries: 2 });
    for (let i = 0; i < 100; i++) b.tryRequest();
    expect(takeN(5, () => b.tryRetry())).toBe(2);
    expect(await overflowCount(cluster, 'max_retries')).toBe(3);
    b.releaseRetry();
    expect(b.tryRetry()).toBe(true);
    expect(b.tryRetry()).toBe(false);
    const none = breaker({ maxRetries: 0 });
    expect(none.b.tryRetry()).toBe(false);
  });

  it('releasing more than was taken never goes below zero (no extra capacity appears)', () => {
    const { b } = breaker({ maxRequests: 1, maxPendingRequests: 1, maxRetries: 1 });
    b.releaseRequest();
    b.releasePending();
    b.releaseRetry();
    expect([b.requests, b.pending, b.retries]).toEqual([0, 0, 0]);
    expect(takeN(3, () => b.tryRequest())).toBe(1);
    expect(takeN(3, () => b.tryPending())).toBe(1);
    expect(takeN(3, () => b.tryRetry())).toBe(1);
  });

  it('the limits are independent: a full request cap does not block pending or retries', () => {
    const { b } = breaker({ maxRequests: 1, maxPendingRequests: 1, maxRetries: 1 });
    expect(b.tryRequest()).toBe(true);
    expect(b.tryRequest()).toBe(false);
    expect(b.tryPending()).toBe(true);
    expect(b.tryRetry()).toBe(true);
  });
});

describe('CircuitBreaker retry budget: allowed = max(budget% x (active + pending), minRetryConcurrency)', () => {
  function withLoad(cb: Record<string, unknown>, active: number, pending: number) {
    const r = breaker({ maxRequests: 100000, maxPendingRequests: 100000, ...cb });
    for (let i = 0; i < active; i++) expect(r.b.tryRequest()).toBe(true);
    for (let i = 0; i < pending; i++) expect(r.b.tryPending()).toBe(true);
    return r;
  }

  it('20 % of 50 active requests = 10 concurrent retries', async () => {
    const { b, cluster } = withLoad({ retryBudget: { budgetPercent: 20, minRetryConcurrency: 3 } }, 50, 0);
    expect(takeN(20, () => b.tryRetry())).toBe(10);
    expect(await overflowCount(cluster, 'max_retries')).toBe(10);
  });

  it('20 % of 100 active requests = 20 (the conformance cheat-sheet row)', () => {
    const { b } = withLoad({ retryBudget: { budgetPercent: 20, minRetryConcurrency: 3 } }, 100, 0);
    expect(takeN(50, () => b.tryRetry())).toBe(20);
  });

  it('min 3 with 5 active requests (20 % of 5 = 1 < 3)', () => {
    const { b } = withLoad({ retryBudget: { budgetPercent: 20, minRetryConcurrency: 3 } }, 5, 0);
    expect(takeN(10, () => b.tryRetry())).toBe(3);
  });

  it('the source comment example: 20 % of 40 active = 8', () => {
    const { b } = withLoad({ retryBudget: { budgetPercent: 20, minRetryConcurrency: 3 } }, 40, 0);
    expect(takeN(20, () => b.tryRetry())).toBe(8);
  });

  it('pending requests count towards the budget: 30 active + 20 pending at 20 % = 10', () => {
    const { b } = withLoad({ retryBudget: { budgetPercent: 20, minRetryConcurrency: 3 } }, 30, 20);
    expect(takeN(20, () => b.tryRetry())).toBe(10);
  });

  it('the budget is truncated, not rounded: 20 % of 24 = 4.8 -> 4', () => {
    const { b } = withLoad({ retryBudget: { budgetPercent: 20, minRetryConcurrency: 1 } }, 24, 0);
    expect(takeN(20, () => b.tryRetry())).toBe(4);
  });

  it('the budget replaces maxRetries (maxRetries 1 ignored when a budget is set)', () => {
    const { b } = withLoad({ maxRetries: 1, retryBudget: { budgetPercent: 50, minRetryConcurrency: 0 } }, 10, 0);
    expect(takeN(20, () => b.tryRetry())).toBe(5);
  });

  it('schema defaults of retryBudget: 20 % and min 3', () => {
    const small = withLoad({ retryBudget: {} }, 5, 0);
    expect(takeN(10, () => small.b.tryRetry())).toBe(3);
    const big = withLoad({ retryBudget: {} }, 50, 0);
    expect(takeN(20, () => big.b.tryRetry())).toBe(10);
  });

  it('the allowance follows the current load: finishing requests shrinks it, releasing a retry frees a slot', () => {
    const { b } = withLoad({ retryBudget: { budgetPercent: 20, minRetryConcurrency: 3 } }, 50, 0);
    expect(takeN(10, () => b.tryRetry())).toBe(10);
    for (let i = 0; i < 25; i++) b.releaseRequest(); // 25 active -> allowed 5, 10 in use
    expect(b.tryRetry()).toBe(false);
    for (let i = 0; i < 5; i++) b.releaseRetry(); // 5 in use, allowed 5
    expect(b.tryRetry()).toBe(false);
    b.releaseRetry(); // 4 in use
    expect(b.tryRetry()).toBe(true);
    expect(b.tryRetry()).toBe(false);
  });

  it('minRetryConcurrency 0 and no load: no retry at all', () => {
    const { b } = withLoad({ retryBudget: { budgetPercent: 20, minRetryConcurrency: 0 } }, 0, 0);
    expect(b.tryRetry()).toBe(false);
  });
});
