import type { Config } from '../config/schema/index.js';
import type { Clock, Rng } from '../common/clock.js';
import { ClusterManager, type HealthOverlay, type LbFactory } from '../cluster/cluster-manager.js';
import type { PoolRegistry } from '../pool/pool-registry.js';
import { RouteTable } from '../router/route-table.js';
import { compileRoute, type RouteRuntime } from './route-runtime.js';
import type { Locality } from '../cluster/host.js';
import type { Filter } from '../filters/filter.js';
import { IDENTITY_HEADERS } from './headers.js';

export type CompiledRoute = RouteRuntime;

/** Builds the filter list of a route (authn, authz, rate limit), once per snapshot. */
export type FilterBuilder = (route: Config['routes'][number], config: Config) => Filter[];

/** Built-in identity headers plus every header JWT providers forward claims into. */
function identityHeaderSet(config: Config): Set<string> {
  const set = new Set(IDENTITY_HEADERS);
  const providers = (config.auth as { jwtProviders?: Array<{ forwardClaims?: Record<string, string> }> } | undefined)?.jwtProviders ?? [];
  for (const p of providers) for (const h of Object.values(p.forwardClaims ?? {})) set.add(h.toLowerCase());
  return set;
}

/**
 * One immutable compiled config version in a worker: clusters with their load balancers, compiled
 * routes and one route table per listener. Requests keep the snapshot they started with.
 */
export class Snapshot {
  readonly version: number;
  readonly config: Config;
  readonly clusters: ClusterManager;
  readonly routes = new Map<string, CompiledRoute>();
  readonly tables = new Map<string, RouteTable<CompiledRoute>>();
  /** Headers only the gateway may set (XFCC, x-real-ip, configured claim headers); stripped from clients. */
  readonly identityHeaders: ReadonlySet<string>;

  constructor(version: number, config: Config, registry: PoolRegistry, overlay: HealthOverlay, env: { clock: Clock; rng: Rng; lbFactory: LbFactory; buildFilters: FilterBuilder }) {
    this.version = version;
    this.config = config;
    this.identityHeaders = identityHeaderSet(config);
    this.clusters = new ClusterManager(config, registry, overlay, { ...env, locality: config.gateway.locality as Locality, labels: config.gateway.labels });
    const maxBody = config.gateway.limits.maxBodyBytes;
    for (const r of config.routes) {
      const compiled = compileRoute(r, this.clusters, maxBody);
      compiled.filters = env.buildFilters(r, config);
      this.routes.set(r.name, compiled);
    }
    for (const l of config.listeners) {
      const names = l.routes ?? config.routes.map((r) => r.name);
      this.tables.set(l.name, new RouteTable(names.filter((n) => this.routes.has(n)).map((n) => ({ config: this.routes.get(n)!.config, payload: this.routes.get(n)! }))));
    }
  }

  /** Release per-snapshot resources (filter timers); pools are owned by the registry. */
  close(): void {
    for (const r of this.routes.values()) for (const f of r.filters) f.close?.();
  }
}
