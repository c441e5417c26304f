import type { ClusterConfig } from '../config/schema/index.js';
import { counter, sampledGauge } from '../observability/metrics.js';

const overflow = counter('meridian_circuit_breaker_overflow_total', 'Requests refused by a circuit breaker', [
  'cluster',
  'limit',
]);

/** The breakers of the clusters of the newest snapshot (see trackBreakers), read when /metrics is scraped. */
let current: ReadonlyMap<string, { breaker: CircuitBreaker }> = new Map();

// Envoy's upstream_rq_active and upstream_rq_pending_active: what the breakers already count, read per scrape.
sampledGauge(
  'meridian_upstream_rq_active',
  'Requests holding a request slot of the cluster, by cluster',
  ['cluster'],
  (set) => {
    for (const [cluster, c] of current) set({ cluster }, c.breaker.requests);
  },
);
sampledGauge(
  'meridian_upstream_rq_pending_active',
  'Upstream attempts waiting for a connection (pending), by cluster',
  ['cluster'],
  (set) => {
    for (const [cluster, c] of current) set({ cluster }, c.breaker.pending);
  },
);

/** The clusters of the newest snapshot: their breakers are the ones the gauges show. */
export function trackBreakers(clusters: ReadonlyMap<string, { breaker: CircuitBreaker }>): void {
  current = clusters;
}

/**
 * Per-cluster circuit breaker counters (Envoy's thresholds). Limits apply per worker process: Envoy
 * shares them across its threads, Meridian's workers are processes, so a cluster's effective limit is
 * the configured value times the number of workers (documented in docs/load-balancing.md).
 */
export class CircuitBreaker {
  requests = 0;
  pending = 0;
  retries = 0;
  readonly #cfg: ClusterConfig['circuitBreakers'];
  readonly #overflow: Record<'requests' | 'pending' | 'retries', { inc(): void }>;

  constructor(cluster: string, cfg: ClusterConfig['circuitBreakers']) {
    this.#cfg = cfg;
    this.#overflow = {
      requests: overflow.labels(cluster, 'max_requests'),
      pending: overflow.labels(cluster, 'max_pending_requests'),
      retries: overflow.labels(cluster, 'max_retries'),
    };
  }

  tryRequest(): boolean {
    if (this.requests >= this.#cfg.maxRequests) return this.#refuse('requests');
    this.requests++;
    return true;
  }

  releaseRequest(): void {
    if (this.requests > 0) this.requests--;
  }

  tryPending(): boolean {
    if (this.pending >= this.#cfg.maxPendingRequests) return this.#refuse('pending');
    this.pending++;
    return true;
  }

  releasePending(): void {
    if (this.pending > 0) this.pending--;
  }

  /**
   * A retry is allowed while active retries stay under maxRetries or, with a retry budget, under
   * max(budgetPercent% of active + pending requests, minRetryConcurrency). Example: budget 20 %,
   * 40 active requests -> 8 concurrent retries; 5 active -> the floor of 3.
   */
  tryRetry(): boolean {
    const b = this.#cfg.retryBudget;
    const allowed = b
      ? Math.max(Math.floor((b.budgetPercent / 100) * (this.requests + this.pending)), b.minRetryConcurrency)
      : this.#cfg.maxRetries;
    if (this.retries >= allowed) return this.#refuse('retries');
    this.retries++;
    return true;
  }

  releaseRetry(): void {
    if (this.retries > 0) this.retries--;
  }

  #refuse(limit: 'requests' | 'pending' | 'retries'): false {
    this.#overflow[limit].inc();
    return false;
  }
}
