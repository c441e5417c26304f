import type { Rng } from './clock.js';

/**
 * Exponential backoff with full jitter: a uniform draw in [0, min(max, base * 2^(attempt-1))].
 * Example: base 25 ms, attempt 3 -> uniform in [0, 100] ms.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, rng: Rng): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(rng.random() * ceiling);
}
