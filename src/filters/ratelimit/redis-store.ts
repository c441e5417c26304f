import { Redis, Cluster, type RedisOptions } from 'ioredis';
import type { Config } from '../../config/schema/index.js';
import { msOf } from '../../config/duration.js';
import { splitAddress } from '../../common/address.js';
import type { Clock } from '../../common/clock.js';
import { logger } from '../../observability/logger.js';
import { counter } from '../../observability/metrics.js';
import { LeasingStore, type LeaseReply } from './leasing-store.js';
import type { Rate } from './token-bucket.js';

type RedisConfig = NonNullable<Config['redis']>;
type Client = Redis | Cluster;

/** What connectRedis needs: where Redis is and how to log in (as in a `redis` section), timeouts in ms. */
export type RedisConnection = Pick<
  RedisConfig,
  'url' | 'mode' | 'sentinels' | 'name' | 'nodes' | 'tls' | 'usernameEnv' | 'passwordEnv'
> & {
  commandTimeoutMs: number;
  connectTimeoutMs: number;
};

/** A `redis` section as a connection, with the timeouts parsed when it was validated. */
export function redisConnection(cfg: RedisConfig): RedisConnection {
  const ms = msOf(cfg);
  return { ...cfg, commandTimeoutMs: ms.timeout, connectTimeoutMs: ms.connectTimeout };
}

/**
 * One atomic token-bucket decision per call, in Redis time: refill, take up to `want` whole tokens,
 * store, and expire the key once it would be full again (no unbounded key growth).
 */
const TAKE_LUA = `
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tk', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil then tokens = capacity; ts = now end
if now > ts then tokens = math.min(capacity, tokens + (now - ts) * rate); ts = now end
local granted = 0
if tokens >= 1 then granted = math.min(want, math.floor(tokens)); tokens = tokens - granted end
redis.call('HSET', KEYS[1], 'tk', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], ttl)
local retry = 0
if granted == 0 then retry = math.ceil((1 - tokens) / rate) end
return { granted, math.floor(tokens), retry }
`;

const outages = counter(
  'meridian_ratelimit_redis_outages_total',
  'Transitions of the rate-limit Redis connection to unavailable',
);

/** Resolves when the client is ready or after `ms`, whichever comes first (never rejects). */
function readyWithin(client: Client, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (client.status === 'ready') return resolve();
    const t = setTimeout(resolve, ms);
    t.unref();
    client.once('ready', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Connect with the configured mode; no offline queue and a command timeout, so a request never waits on Redis. */
export function connectRedis(cfg: RedisConnection): Client {
  const opts: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: cfg.commandTimeoutMs,
    connectTimeout: cfg.connectTimeoutMs,
    retryStrategy: (n) => Math.min(100 * n, 2000),
    username: cfg.usernameEnv ? process.env[cfg.usernameEnv] : undefined,
    password: cfg.passwordEnv ? process.env[cfg.passwordEnv] : undefined,
    tls: cfg.tls ? {} : undefined,
    lazyConnect: false,
  };
  const client: Client =
    cfg.mode === 'cluster'
      ? new Cluster(
          (cfg.nodes ?? [cfg.url.replace(/^rediss?:\/\//, '')]).map((n) => splitAddress(n)),
          { redisOptions: opts, enableOfflineQueue: false },
        )
      : cfg.mode === 'sentinel'
        ? // ioredis applies `tls` to the master only when told to; sentinels get the same credentials.
          new Redis({
            ...opts,
            sentinels: (cfg.sentinels ?? []).map((s) => splitAddress(s)),
            name: cfg.name,
            enableTLSForSentinelMode: cfg.tls,
            sentinelTLS: opts.tls,
            sentinelPassword: opts.password,
            sentinelUsername: opts.username,
          })
        : new Redis(cfg.url, opts);
  client.defineCommand('meridianTake', { numberOfKeys: 1, lua: TAKE_LUA });
  client.on('error', () => {});
  return client;
}

/**
 * The redis store: a LeasingStore whose authoritative bucket is the Lua script. Outage and recovery
 * are logged once each and counted; callers apply the policy's failure mode to rejected decisions.
 */
export function createRedisStore(client: Client, cfg: RedisConfig, clock: Clock): LeasingStore {
  let down = false;
  const prefix = cfg.keyPrefix;
  const firstConnect = readyWithin(client, msOf(cfg).connectTimeout);
  const fetch = async (key: string, rate: Rate, want: number): Promise<LeaseReply> => {
    const ttl = Math.ceil(rate.capacity / rate.perMs) + 1000;
    try {
      // Right after start the connection may still be opening: wait for it (bounded) rather than
      // treating "not connected yet" as an outage.
      if (client.status !== 'ready') await firstConnect;
      const [granted, remaining, retry] = await (
        client as unknown as { meridianTake(k: string, ...a: number[]): Promise<number[]> }
      ).meridianTake(prefix + key, rate.perMs, rate.capacity, want, ttl);
      if (down) {
        down = false;
        logger.info('rate-limit redis recovered');
      }
      return { granted, remaining, retryAfterMs: retry };
    } catch (e) {
      if (!down) {
        down = true;
        outages.inc();
        logger.warn({ err: (e as Error).message }, "rate-limit redis unavailable; applying each policy's failure mode");
      }
      throw e;
    }
  };
  return new LeasingStore(fetch, clock);
}
