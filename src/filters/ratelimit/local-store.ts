import type { RpcChannel, RpcServer } from '../../control/ipc/rpc.js';
import type { Clock } from '../../common/clock.js';
import { fullBucket, msUntilToken, take, type Bucket, type Rate } from './token-bucket.js';
import { LeasingStore, type LeaseReply } from './leasing-store.js';

const TOPIC = 'ratelimit.lease';
const MAX_KEYS = 100_000;

interface LeaseRequest {
  key: string;
  perMs: number;
  capacity: number;
  want: number;
}

/**
 * Primary side: the authoritative buckets of the local store, shared by all workers of the gateway.
 * Buckets idle long enough to be full again are evicted (and the table is capped), so keys cannot grow
 * without bound.
 */
export function registerLocalRateLimitServer(server: RpcServer, clock: Clock): void {
  const buckets = new Map<string, Bucket>();
  server.handle(TOPIC, (req: LeaseRequest): LeaseReply => {
    const rate: Rate = { perMs: req.perMs, capacity: req.capacity };
    const now = clock.now();
    let b = buckets.get(req.key);
    if (!b) {
      if (buckets.size >= MAX_KEYS) evict(buckets, now, rate);
      buckets.set(req.key, (b = fullBucket(rate, now)));
    }
    const granted = take(b, rate, now, req.want);
    return { granted, remaining: Math.floor(b.tokens), retryAfterMs: granted ? 0 : msUntilToken(b, rate) };
  });
}

function evict(buckets: Map<string, Bucket>, now: number, rate: Rate) {
  const fullAfter = rate.capacity / rate.perMs;
  for (const [k, b] of buckets) if (now - b.at > fullAfter) buckets.delete(k);
  // Still full of recently used keys: drop the oldest inserted.
  while (buckets.size >= MAX_KEYS) buckets.delete(buckets.keys().next().value!);
}

/**
 * Worker side of the local store: tokens leased from the primary's bucket (see LeasingStore).
 */
export function createLocalStore(rpc: RpcChannel, clock: Clock): LeasingStore {
  return new LeasingStore(
    (key, rate, want) =>
      rpc.request<LeaseReply>(TOPIC, { key, perMs: rate.perMs, capacity: rate.capacity, want } satisfies LeaseRequest),
    clock,
  );
}
