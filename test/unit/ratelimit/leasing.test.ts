import { describe, it, expect } from 'vitest';
import { take, fullBucket, msUntilToken } from '../../../src/filters/ratelimit/token-bucket.js';
import { createLocalStore, registerLocalRateLimitServer } from '../../../src/filters/ratelimit/local-store.js';
import { createLocalRpc } from '../../../src/control/ipc/rpc.js';
import { LeasingStore } from '../../../src/filters/ratelimit/leasing-store.js';

const rate = (requests: number, perMs: number, burst = requests) => ({ perMs: requests / perMs, capacity: burst });

describe('token bucket', () => {
  it('starts full, empties, and refills at the configured rate', () => {
    const r = rate(100, 1000, 120);
    const b = fullBucket(r, 0);
    expect(take(b, r, 0, 1000)).toBe(120);
    expect(take(b, r, 0, 1)).toBe(0);
    expect(msUntilToken(b, r)).toBe(10);
    expect(take(b, r, 100, 1000)).toBe(10);
    expect(take(b, r, 10_000, 1000)).toBe(120);
  });
});

describe('local store shared by workers', () => {
  it('admits the limit in total across two workers, not twice the limit', async () => {
    const clock = {
      t: 0,
      now() {
        return this.t;
      },
    };
    const { channel, server } = createLocalRpc();
    registerLocalRateLimitServer(server, clock);
    const workers = [createLocalStore(channel, clock), createLocalStore(channel, clock)];
    const r = rate(100, 1000);
    let admitted = 0;
    // 5 simulated seconds, each worker offering 50 requests every 10 ms (10x the limit in total).
    for (clock.t = 0; clock.t < 5000; clock.t += 10) {
      for (const w of workers) for (let i = 0; i < 50; i++) if ((await w.take('k', r)).allowed) admitted++;
    }
    const expected = 100 + 100 * 5;
    expect(Math.abs(admitted - expected) / expected).toBeLessThanOrEqual(0.05);
  });
});

describe('leasing under concurrency (the Redis store leases one token per round trip by default)', () => {
  /** An authoritative bucket behind an async round trip, like the Redis script. */
  function store(capacity: number) {
    const bucket = fullBucket({ perMs: 0, capacity }, 0);
    let trips = 0;
    const s = new LeasingStore(
      async (_key, rate, want) => {
        trips++;
        await new Promise((r) => setTimeout(r, 2)); // deliberate: the round trip's latency, so requests overlap
        const granted = take(bucket, rate, 0, want);
        return { granted, remaining: Math.floor(bucket.tokens), retryAfterMs: granted ? 0 : 1000 };
      },
      { now: () => 0 },
    );
    return { s, trips: () => trips };
  }

  it('admits every concurrent request while the bucket has tokens (shared round trips ask for one per waiter)', async () => {
    const { s, trips } = store(1000);
    const decisions = await Promise.all(Array.from({ length: 50 }, () => s.take('k', { perMs: 0, capacity: 1000 }, 1)));
    expect(decisions.every((d) => d.allowed)).toBe(true);
    expect(trips()).toBeLessThan(50);
  });

  it('refuses exactly the requests the bucket cannot cover', async () => {
    const { s } = store(30);
    const decisions = await Promise.all(Array.from({ length: 50 }, () => s.take('k', { perMs: 0, capacity: 30 }, 1)));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(30);
  });
});
