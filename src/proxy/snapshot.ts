import type { Config } from '../config/schema/index.js';
import type { Clock, Rng } from '../common/clock.js';
import { ClusterManager, type HealthOverlay, type LbFactory } from '../cluster/cluster-manager.js';
import type { PoolRegistry } from '../pool/pool-registry.js';
import { RouteTable } from '../router/route-table.js';
import { compileRoute, type RouteRuntime } from './route-runtime.js';
import type { Locality } from '../cluster/host.js';
import type { Filter } from '../filters/filter.js';
import { IDENTITY_HEADERS } from './headers.js';
import { msOf } from '../config/duration.js';
import type { BodyProgressRule } from './body-deadline.js';
import type { HostAges } from '../cluster/host-ages.js';
import { applyEndpointDelta, type EndpointDelta } from '../config/endpoint-delta.js';
import type { RequestTracing } from '../observability/tracing.js';

export type CompiledRoute = RouteRuntime;

/** Builds the filter list of a route (authn, authz, rate limit), once per snapshot. */
export type FilterBuilder = (route: Config['routes'][number], config: Config) => Filter[];

/** Built-in identity headers plus every header JWT providers forward claims into and API-key sets name consumers in. */
function identityHeaderSet(config: Config): Set<string> {
  const set = new Set(IDENTITY_HEADERS);
  const auth = config.auth as
    | { jwtProviders?: Array<{ forwardClaims?: Record<string, string> }>; apiKeys?: Array<{ consumerHeader?: string }> }
    | undefined;
  for (const p of auth?.jwtProviders ?? [])
    for (const h of Object.values(p.forwardClaims ?? {})) set.add(h.toLowerCase());
  for (const k of auth?.apiKeys ?? []) if (k.consumerHeader) set.add(k.consumerHeader.toLowerCase());
  return set;
}

/**
 * One immutable compiled config version in a worker: clusters with their load balancers, compiled
 * routes and one route table per listener. Requests keep the snapshot they started with.
 */
export class Snapshot {
  /** Advanced in place by an endpoint delta (see applyEndpoints), like the hosts it changes. */
  version: number;
  config: Config;
  readonly clusters: ClusterManager;
  readonly routes = new Map<string, CompiledRoute>();
  readonly tables = new Map<string, RouteTable<CompiledRoute>>();
  /** Headers only the gateway may set (XFCC, x-real-ip, configured claim headers); stripped from clients. */
  readonly identityHeaders: ReadonlySet<string>;
  /** limits.bodyTimeout / bodyMinRate, parsed; undefined when the rule is off. */
  readonly bodyProgress: BodyProgressRule | undefined;
  /** Spans of this version's requests (gateway.tracing); undefined, and never looked at further, when tracing is off. */
  readonly tracing: RequestTracing | undefined;

  /** `previous`: the snapshot this one replaces; its unchanged clusters are carried over (see ClusterManager). */
  constructor(
    version: number,
    config: Config,
    registry: PoolRegistry,
    overlay: HealthOverlay,
    env: {
      clock: Clock;
      rng: Rng;
      lbFactory: LbFactory;
      buildFilters: FilterBuilder;
      ages: HostAges;
      tracing?: RequestTracing;
    },
    previous?: Snapshot,
  ) {
    this.version = version;
    this.config = config;
    this.tracing = env.tracing;
    this.identityHeaders = identityHeaderSet(config);
    const limits = config.gateway.limits;
    const bodyTimeoutMs = msOf(limits).bodyTimeout;
    this.bodyProgress = bodyTimeoutMs > 0 ? { timeoutMs: bodyTimeoutMs, minRate: limits.bodyMinRate } : undefined;
    this.clusters = new ClusterManager(
      config,
      registry,
      overlay,
      { ...env, locality: config.gateway.locality as Locality, labels: config.gateway.labels },
      previous?.clusters,
    );
    const maxBody = config.gateway.limits.maxBodyBytes;
    for (const r of config.routes) {
      const compiled = compileRoute(r, this.clusters, maxBody);
      compiled.filters = env.buildFilters(r, config);
      this.routes.set(r.name, compiled);
    }
    for (const l of config.listeners) {
      const names = l.routes ?? config.routes.map((r) => r.name);
      const routes = names.filter((n) => this.routes.has(n)).map((n) => this.routes.get(n)!);
      this.tables.set(l.name, new RouteTable(routes.map((r) => ({ config: r.config, payload: r }))));
    }
  }

  /**
   * Does a route of this listener name `host` (lower-case, without port)? The listener's route table
   * answers (see RouteTable.servesHost); an unknown listener serves nothing.
   */
  servesHost(listener: string, host: string): boolean {
    return this.tables.get(listener)?.servesHost(host) ?? false;
  }

  /**
   * An endpoint delta: the named clusters (and aggregates over them) swap hosts and load balancers in
   * place; routes, filters and tables stay (they hold the cluster runtimes, which stay the same
   * objects). Returns the removed addresses by cluster.
   */
  applyEndpoints(
    version: number,
    delta: EndpointDelta,
    registry: PoolRegistry,
    overlay: HealthOverlay,
  ): Map<string, Set<string>> {
    this.config = applyEndpointDelta(this.config, delta);
    this.version = version;
    return this.clusters.applyEndpoints(this.config, delta, registry, overlay);
  }

  /** Release per-snapshot resources (filter timers); pools are owned by the registry. */
  close(): void {
    for (const r of this.routes.values()) for (const f of r.filters) f.close?.();
  }
}
