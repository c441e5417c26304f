import type { LbFactory } from '../cluster/cluster-manager.js';
import type { Config } from '../config/schema/index.js';
import type { FilterBuilder } from '../proxy/snapshot.js';
import type { RpcChannel } from '../control/ipc/rpc.js';
import type { Filter } from '../filters/filter.js';
import { createLoadBalancer } from '../lb/load-balancer.js';
import { JwtProvider } from '../filters/authn/jwt.js';
import { ApiKeySet } from '../filters/authn/api-key.js';
import { createAuthnFilter } from '../filters/authn/filter.js';
import { createRbacFilter } from '../filters/authz/rbac.js';
import { logger } from '../observability/logger.js';
import { systemClock } from '../common/clock.js';
import { createLocalStore } from '../filters/ratelimit/local-store.js';
import { connectRedis, createRedisStore, redisConnection } from '../filters/ratelimit/redis-store.js';
import { compilePolicy, createRateLimitFilter } from '../filters/ratelimit/filter.js';
import type { LeasingStore } from '../filters/ratelimit/leasing-store.js';

/** The load balancer used by every cluster: priority/locality math plus the configured policy. */
export const lbFactory: LbFactory = createLoadBalancer;

type Provider = JwtProvider | ApiKeySet;

/** Auth providers of one snapshot, built once and shared by every route naming them. */
const providersByConfig = new WeakMap<Config, Map<string, Provider>>();

function providersOf(config: Config): Map<string, Provider> {
  let m = providersByConfig.get(config);
  if (!m) {
    m = new Map<string, Provider>();
    for (const p of config.auth.jwtProviders) m.set(p.name, new JwtProvider(p));
    for (const k of config.auth.apiKeys) m.set(k.name, new ApiKeySet(k));
    providersByConfig.set(config, m);
  }
  return m;
}

/** Build a route's filter chain in phase order: authn -> authz -> rate limit. */
export function filterBuilder(rpc: RpcChannel): FilterBuilder {
  const stores = new RateLimitStores(rpc);
  return (route, config) => {
    const filters: Filter[] = [];
    const log = logger.child({ route: route.name });
    if (route.auth?.length)
      filters.push(
        createAuthnFilter(
          route.name,
          route.auth.map((n) => providersOf(config).get(n)!),
          log,
        ),
      );
    if (route.rbac) filters.push(createRbacFilter(config.rbac.find((p) => p.name === route.rbac)!, log));
    if (route.rateLimits?.length) {
      const policies = route.rateLimits.map((n) => config.rateLimits.find((p) => p.name === n)!);
      filters.push(createRateLimitFilter(policies.map((p) => compilePolicy(p, stores.for(p, config)))));
    }
    return filters;
  };
}

/**
 * The worker's rate-limit stores: one local (leasing from the primary) and one per Redis
 * configuration, kept across snapshots so buckets, leases and connections survive reloads.
 */
class RateLimitStores {
  readonly #local: LeasingStore;
  #redis: { key: string; client: ReturnType<typeof connectRedis>; store: LeasingStore } | undefined;

  constructor(rpc: RpcChannel) {
    this.#local = createLocalStore(rpc, systemClock);
  }

  for(policy: Config['rateLimits'][number], config: Config): LeasingStore {
    if (policy.store === 'local') return this.#local;
    const cfg = config.redis!;
    const key = JSON.stringify(cfg);
    if (this.#redis?.key !== key) {
      this.#redis?.client.disconnect();
      const client = connectRedis(redisConnection(cfg));
      this.#redis = { key, client, store: createRedisStore(client, cfg, systemClock) };
    }
    return this.#redis.store;
  }
}
