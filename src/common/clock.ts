/** Injected time source, so LB, outlier detection, rate limiting and health checks are testable with fake time. */
export interface Clock {
  /** Monotonic milliseconds. */
  now(): number;
}

/** Injected randomness: a float in [0, 1). */
export interface Rng {
  random(): number;
}

export const systemClock: Clock = { now: () => performance.now() };
export const systemRng: Rng = { random: Math.random };

/** A deterministic PRNG (mulberry32) for tests and reproducible benchmarks. */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return {
    random() {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}
