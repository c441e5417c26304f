import type { Clock } from '../../common/clock.js';
import type { Rate } from './token-bucket.js';
import type { Decision, RateLimitStore } from './store.js';

/** Tokens granted by the authoritative bucket (the primary's, or Redis). */
export interface LeaseReply {
  granted: number;
  remaining: number;
  retryAfterMs: number;
}

/** Takes up to `want` tokens from the authoritative bucket of `key`. */
export type LeaseFetcher = (key: string, rate: Rate, want: number) => Promise<LeaseReply>;

/** Leased tokens not used by then are dropped, so a lease cannot admit stale traffic. */
const LEASE_TTL_MS = 100;
const MAX_KEYS = 100_000;

interface Lease {
  tokens: number;
  expires: number;
  remaining: number;
  retryAfterMs: number;
  pending: Promise<void> | undefined;
  /** Requests waiting for tokens of this key: a round trip asks for at least one per waiter. */
  waiting: number;
}

/**
 * Spends tokens leased from an authoritative bucket. Every admission spent a token of that one
 * bucket, so the limit is never exceeded; tokens leased but unused when the lease expires (100 ms) are
 * lost, so under-admission is bounded by the lease size per holder. The lease size is `batch` for
 * Redis (one round trip per batch) and 2 % of the burst for the local store.
 */
export class LeasingStore implements RateLimitStore {
  readonly #fetch: LeaseFetcher;
  readonly #clock: Clock;
  readonly #leases = new Map<string, Lease>();

  constructor(fetch: LeaseFetcher, clock: Clock) {
    this.#fetch = fetch;
    this.#clock = clock;
  }

  take(key: string, rate: Rate, want = leaseSize(rate)): Decision | Promise<Decision> {
    let lease = this.#leases.get(key);
    if (lease && lease.tokens > 0 && lease.expires > this.#clock.now()) return spend(lease);
    if (!lease) {
      if (this.#leases.size >= MAX_KEYS) this.#leases.clear();
      this.#leases.set(
        key,
        (lease = { tokens: 0, expires: 0, remaining: 0, retryAfterMs: 0, pending: undefined, waiting: 0 }),
      );
    }
    return this.#refill(key, rate, lease, want);
  }

  /**
   * Wait for tokens of a key. Concurrent requests share round trips, and a round trip asks for at
   * least one token per waiting request; a request that still finds none retries while the
   * authoritative bucket had tokens left (it was outrun by the others), and is refused only when the
   * bucket itself is empty. A failure rejects every waiter.
   */
  async #refill(key: string, rate: Rate, lease: Lease, want: number): Promise<Decision> {
    lease.waiting++;
    try {
      for (;;) {
        lease.pending ??= this.#fetch(key, rate, Math.max(want, lease.waiting)).then(
          (r) => {
            lease.tokens = r.granted;
            lease.remaining = r.remaining;
            lease.retryAfterMs = r.retryAfterMs;
            lease.expires = this.#clock.now() + LEASE_TTL_MS;
            lease.pending = undefined;
          },
          (e: Error) => {
            lease.pending = undefined;
            throw e;
          },
        );
        await lease.pending;
        if (lease.tokens > 0) return spend(lease);
        if (lease.remaining <= 0) return { allowed: false, remaining: 0, retryAfterMs: lease.retryAfterMs || 1000 };
      }
    } finally {
      lease.waiting--;
    }
  }
}

function spend(lease: Lease): Decision {
  lease.tokens--;
  return { allowed: true, remaining: lease.remaining + lease.tokens, retryAfterMs: 0 };
}

/** 2 % of the burst (at least 1, at most 1000): small enough to stay accurate, large enough to amortize. */
export function leaseSize(rate: Rate): number {
  return Math.max(1, Math.min(1000, Math.floor(rate.capacity * 0.02)));
}
