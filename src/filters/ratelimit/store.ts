import type { Rate } from './token-bucket.js';

/** One decision of a store. */
export interface Decision {
  allowed: boolean;
  /** Whole tokens left for this key (best known). */
  remaining: number;
  /** When denied: milliseconds until a token is available. */
  retryAfterMs: number;
}

/**
 * A rate-limit store: where buckets live. `local` = the gateway's primary (shared by its workers),
 * `redis` = shared by every gateway. Synchronous when it can answer from memory.
 */
export interface RateLimitStore {
  take(key: string, rate: Rate): Decision | Promise<Decision>;
}
