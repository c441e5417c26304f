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
  void rpc;
  return (route, config) => {
    const filters: Filter[] = [];
    const log = logger.child({ route: route.name });
    if (route.auth?.length) filters.push(createAuthnFilter(route.name, route.auth.map((n) => providersOf(config).get(n)!), log));
    if (route.rbac) filters.push(createRbacFilter(config.rbac.find((p) => p.name === route.rbac)!, log));
    return filters;
  };
}
