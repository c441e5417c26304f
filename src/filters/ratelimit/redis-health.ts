import type { Config } from '../../config/schema/index.js';
import { connectRedis, redisConnection } from './redis-store.js';

const PING_MS = 1000;

/**
 * Redis reachability for `/ready` details, seen from the primary: a ping every second while some
 * rate-limit policy uses Redis. Reported, not gating readiness (fail-open policies keep serving).
 */
export class RedisHealth {
  #key = '';
  #client: ReturnType<typeof connectRedis> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #up: boolean | undefined;

  status(config: Config): Record<string, unknown> {
    const uses = config.redis && config.rateLimits.some((p) => p.store === 'redis');
    if (!uses) {
      this.stop();
      return {};
    }
    this.#watch(config.redis!);
    return { redis: this.#up === undefined ? 'connecting' : this.#up ? 'up' : 'down' };
  }

  #watch(cfg: NonNullable<Config['redis']>) {
    const key = JSON.stringify(cfg);
    if (key === this.#key) return;
    this.stop();
    this.#key = key;
    const client = (this.#client = connectRedis(redisConnection(cfg)));
    const ping = () =>
      client.ping().then(
        () => {
          this.#up = true;
        },
        () => {
          this.#up = false;
        },
      );
    void ping();
    this.#timer = setInterval(ping, PING_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#client?.disconnect();
    this.#client = undefined;
    this.#key = '';
    this.#up = undefined;
  }
}
