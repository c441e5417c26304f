import type { Redis } from 'ioredis';
import { ApiError } from '../api-error.js';
import type { Config } from '../../config/schema/index.js';
import { connectRedis } from '../../filters/ratelimit/redis-store.js';
import { msOf } from '../../config/duration.js';
import { logger } from '../../observability/logger.js';
import type { ConfigChanges } from '../config-service.js';

import { configHash } from './config-store.js';

type ConfigStoreConfig = NonNullable<Config['configStore']>;

const log = logger.child({ component: 'shared-config' });
const SOURCE = 'shared-store';

/**
 * Compare-and-set of the shared document: succeeds only if nobody wrote since the revision this
 * replica last saw, so two replicas changing the config at once cannot silently lose one change.
 */
const CAS_LUA = `
local rev = tonumber(redis.call('GET', KEYS[2]) or '0')
if rev ~= tonumber(ARGV[1]) then return {0, rev} end
rev = rev + 1
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], rev)
redis.call('PUBLISH', KEYS[3], rev)
return {1, rev}`;

type CasClient = Redis & {
  meridianCas(doc: string, rev: string, chan: string, expected: number, body: string): Promise<[number, number]>;
};

/**
 * Replicas of one gateway kept consistent through Redis, without a hub: every admin change is
 * written to Redis (compare-and-set) before it is stored locally, and published; every replica
 * applies the shared document when notified, on start and after a reconnect. When Redis is down the
 * data plane keeps its config and admin writes are refused (503) rather than let replicas diverge.
 */
export class SharedConfigStore {
  readonly #cmd: CasClient;
  readonly #sub: Redis;
  #changes: ConfigChanges | undefined;
  readonly #keys: { doc: string; rev: string; channel: string };
  #rev = 0;
  #syncing: Promise<void> = Promise.resolve();

  #down = false;

  constructor(cfg: ConfigStoreConfig, gatewayName: string) {
    const prefix = cfg.key ?? `meridian:config:${gatewayName}`;
    this.#keys = { doc: `${prefix}:doc`, rev: `${prefix}:rev`, channel: `${prefix}:changed` };
    // The rate limiter's connection settings: no offline queue, a command timeout, capped reconnects.
    const timeoutMs = msOf(cfg).timeout;
    this.#cmd = connectRedis({
      url: cfg.url,
      mode: 'standalone',
      commandTimeoutMs: timeoutMs,
      connectTimeoutMs: timeoutMs,
      tls: cfg.url.startsWith('rediss:'),
      passwordEnv: cfg.passwordEnv,
    }) as CasClient;
    this.#cmd.defineCommand('meridianCas', { numberOfKeys: 3, lua: CAS_LUA });
    this.#sub = this.#cmd.duplicate({ commandTimeout: undefined });
    this.#sub.on('error', () => {});
  }

  /** Follow the shared document: adopt it through `changes` on start, on every notification, after a reconnect. */
  start(changes: ConfigChanges): void {
    this.#changes = changes;
    this.#cmd.on('ready', () => {
      if (this.#down) log.info('shared config store reachable again');
      this.#down = false;
      this.#syncSoon();
    });
    // ioredis emits 'close' on every failed reconnect attempt too: log the outage once.
    this.#cmd.on('close', () => {
      if (!this.#down) log.warn('shared config store unreachable; serving the current config, refusing admin writes');
      this.#down = true;
    });
    // Read the document once the subscription holds: a change published before it (while this replica
    // was starting, or while the subscriber was reconnecting) sends no message we could still get.
    const subscribe = () =>
      void this.#sub.subscribe(this.#keys.channel).then(
        () => this.#syncSoon(),
        () => {},
      );
    this.#sub.on('ready', subscribe);
    this.#sub.on('message', () => this.#syncSoon());
    // The connections opened with the constructor: one may be ready before these listeners were.
    if (this.#cmd.status === 'ready') this.#syncSoon();
    if (this.#sub.status === 'ready') subscribe();
  }

  get connected(): boolean {
    return this.#cmd.status === 'ready';
  }

  stop(): void {
    this.#down = true; // a deliberate close is not an outage
    this.#cmd.disconnect();
    this.#sub.disconnect();
  }

  /**
   * Write a change through to Redis before it is stored locally (the config service's beforeCommit):
   * refused with 409 when another replica wrote first, 503 when Redis is unreachable.
   */
  async writeThrough(config: Config, source: string): Promise<void> {
    // Adopting the shared document: from now on our config is that revision (set inside the
    // change queue, so a local change queued before it cannot compare-and-set against it).
    if (source.startsWith(SOURCE)) return void (this.#rev = Number(source.slice(SOURCE.length + 1)));
    let result: [number, number];
    try {
      const body = JSON.stringify({ hash: configHash(config), config });
      result = await this.#cmd.meridianCas(this.#keys.doc, this.#keys.rev, this.#keys.channel, this.#rev, body);
    } catch (e) {
      throw new ApiError(503, 'shared store unreachable', {
        error: 'store_unavailable',
        message: `the shared config store is unreachable (${(e as Error).message}); the change is refused so replicas do not diverge`,
      });
    }
    const [ok, rev] = result;
    if (!ok) {
      this.#syncSoon();
      throw new ApiError(409, 'conflict', {
        error: 'conflict',
        message: `another replica changed the config first (shared revision ${rev}); read it again and retry`,
      });
    }
    this.#rev = rev;
  }

  #syncSoon(): void {
    this.#syncing = this.#syncing
      .then(() => this.#sync())
      .catch((e: Error) => log.warn({ err: e.message }, 'shared config sync failed'));
  }

  /** Adopt the shared document if it differs from ours; seed it from ours if Redis has none. */
  async #sync(): Promise<void> {
    const [doc, rev] = await this.#cmd.mget(this.#keys.doc, this.#keys.rev);
    if (!doc) {
      this.#rev = 0;
      const cur = this.#changes!.current;
      await this.writeThrough(cur.config, 'seed');
      log.info({ version: cur.version }, 'seeded the shared config store');
      return;
    }
    const sharedRev = Number(rev ?? 0);
    const shared = JSON.parse(doc) as { hash: string; config: Config };
    if (shared.hash === this.#changes!.current.hash) return void (this.#rev = sharedRev);
    // By the time this runs in the change queue a local write may have moved past sharedRev: keep it.
    const adopt = (draft: Config) => (this.#rev >= sharedRev ? draft : shared.config);
    const r = await this.#changes!.change(
      SOURCE,
      `sync shared revision ${sharedRev}`,
      undefined,
      adopt,
      `${SOURCE}:${sharedRev}`,
    );
    log.info({ version: r.version, sharedRevision: sharedRev }, 'applied the shared config');
  }
}
