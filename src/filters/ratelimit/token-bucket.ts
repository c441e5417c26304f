/** A limit as the math needs it: refill rate in tokens per ms and capacity (burst). */
export interface Rate {
  perMs: number;
  capacity: number;
}

/** Mutable bucket state: tokens (fractional) at time `at` (ms). */
export interface Bucket {
  tokens: number;
  at: number;
}

/** A new, full bucket. */
export function fullBucket(rate: Rate, now: number): Bucket {
  return { tokens: rate.capacity, at: now };
}

/**
 * Refill for the elapsed time, then take up to `want` whole tokens (at least `min` or nothing).
 * Returns the tokens granted. Example: 100 per 1 s, burst 120: an empty bucket holds 10 tokens again
 * after 100 ms.
 */
export function take(b: Bucket, rate: Rate, now: number, want: number, min = 1): number {
  if (now > b.at) {
    b.tokens = Math.min(rate.capacity, b.tokens + (now - b.at) * rate.perMs);
    b.at = now;
  }
  if (b.tokens < min) return 0;
  const granted = Math.min(want, Math.floor(b.tokens));
  b.tokens -= granted;
  return granted;
}

/** Milliseconds until one token is available again. */
export function msUntilToken(b: Bucket, rate: Rate): number {
  return b.tokens >= 1 ? 0 : Math.ceil((1 - b.tokens) / rate.perMs);
}
