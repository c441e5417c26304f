import type { ClusterConfig, Config } from '../config/schema/index.js';
import type { Clock, Rng } from '../common/clock.js';
import { HostFlag, type Host, type Locality } from './host.js';
import type { LbBuildInput, LbConfig, LoadBalancer } from '../lb/types.js';
import type { EndpointPool, PoolRegistry } from '../pool/pool-registry.js';
import { splitAddress } from '../common/address.js';
import { hostMetrics } from '../observability/request-metrics.js';
import { CircuitBreaker } from '../pool/circuit-breaker.js';
import type { HostAges } from './host-ages.js';

/** Flags set by the primary (active health checks, outlier ejection): cluster -> address -> flags. */
export type HealthOverlay = Record<string, Record<string, number>>;

/** A host plus what the data plane needs to send to it. */
export interface UpstreamHost extends Host {
  /** The endpoint's connection pool, made on its first request. */
  readonly pool: EndpointPool;
  /** The static cluster the endpoint belongs to (differs from the routed cluster for aggregates). */
  readonly cluster: string;
  /** Requests and errors seen by this worker, for status and outlier reporting. */
  stats: { requests: number; errors: number };
  /** Prometheus children for this endpoint, resolved once. */
  readonly metrics: ReturnType<typeof hostMetrics>;
}

export type LbFactory = (input: LbBuildInput) => LoadBalancer;

const ADMIN_FLAGS: Record<string, number> = { unhealthy: HostFlag.ADMIN_UNHEALTHY, degraded: HostFlag.ADMIN_DEGRADED, draining: HostFlag.DRAINING, healthy: 0 };
const OVERLAY_MASK = HostFlag.FAILED_ACTIVE_HC | HostFlag.DEGRADED_ACTIVE_HC | HostFlag.FAILED_OUTLIER_CHECK;

/** One routable cluster of a snapshot: its hosts (all priorities) and the load balancer over them. */
export class ClusterRuntime {
  readonly name: string;
  readonly config: ClusterConfig;
  readonly hosts: UpstreamHost[];
  lb: LoadBalancer;
  /** Extracts the hash key for ring_hash/maglev from a request; undefined for other policies. */
  readonly hashKeyOf: HashKeyFn | undefined;
  readonly breaker: CircuitBreaker;
  readonly #build: () => LoadBalancer;
  readonly #ages: HostAges;

  constructor(config: ClusterConfig, hosts: UpstreamHost[], build: (hosts: UpstreamHost[]) => LoadBalancer, ages: HostAges) {
    this.name = config.name;
    this.#ages = ages;
    this.config = config;
    this.hosts = hosts;
    this.#build = () => build(hosts);
    this.lb = this.#build();
    this.hashKeyOf = compileHashKey(config.lb.hashOn);
    this.breaker = new CircuitBreaker(config.name, config.circuitBreakers);
  }

  /** Apply overlay flags; rebuild the LB only when some host's flags actually changed. */
  applyOverlay(overlay: HealthOverlay): boolean {
    let changed = false;
    for (const h of this.hosts) {
      const next = (h.flags & ~OVERLAY_MASK) | ((overlay[h.cluster]?.[h.address] ?? 0) & OVERLAY_MASK);
      if (next !== h.flags) {
        if (h.flags & HostFlag.FAILED_ACTIVE_HC && !(next & HostFlag.FAILED_ACTIVE_HC)) h.healthySince = this.#ages.becameHealthy(h.cluster, h.address);
        h.flags = next;
        changed = true;
      }
    }
    if (changed) this.lb = this.#build();
    return changed;
  }
}

/** What a hash key is read from: request headers and the client address. */
export type HashKeyFn = (headers: Readonly<Record<string, string | string[] | undefined>>, clientIp: string) => string | undefined;

/** Compile `lb.hashOn` (header, cookie or source IP) into a key extractor, once per snapshot. */
function compileHashKey(hashOn: ClusterConfig['lb']['hashOn']): HashKeyFn | undefined {
  if (!hashOn) return undefined;
  if (hashOn.header) {
    const name = hashOn.header.toLowerCase();
    return (h) => {
      const v = h[name];
      return Array.isArray(v) ? v[0] : v;
    };
  }
  if (hashOn.cookie) {
    const re = new RegExp(`(?:^|;\\s*)${hashOn.cookie.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}=([^;]*)`);
    return (h) => {
      const c = h.cookie;
      const m = typeof c === 'string' ? re.exec(c) : undefined;
      return m ? m[1] : undefined;
    };
  }
  return hashOn.sourceIp ? (_h, ip) => ip : undefined;
}

/**
 * All clusters of one snapshot, built from config with pools borrowed from the shared registry. A
 * static cluster whose config (and the gateway's locality) is the same as in the previous snapshot is
 * carried over as it is, runtime and host objects included (their stats, in-flight counts, circuit
 * breaker and LB state): a change elsewhere, say a route or another cluster's endpoints, costs that
 * cluster nothing, however many endpoints it has. Aggregate clusters are always rebuilt (cheap: they
 * stack their members' hosts).
 */
export class ClusterManager {
  readonly #clusters = new Map<string, ClusterRuntime>();
  /** Keys of the endpoint pools this snapshot's hosts use (the registry closes the others). */
  readonly poolKeys = new Set<string>();
  /** Each static cluster's config as JSON, and the gateway's locality: what a carried-over cluster must match. */
  readonly #configKeys = new Map<string, string>();
  readonly #localityKey: string;

  constructor(config: Config, registry: PoolRegistry, overlay: HealthOverlay, env: { locality: Locality; labels?: Readonly<Record<string, string>>; clock: Clock; rng: Rng; lbFactory: LbFactory; ages: HostAges }, previous?: ClusterManager) {
    this.#localityKey = JSON.stringify([env.locality, env.labels ?? null]);
    const sameLocality = previous !== undefined && previous.#localityKey === this.#localityKey;
    const staticHosts = new Map<string, UpstreamHost[]>();
    const carried = new Map<string, ClusterRuntime>();
    for (const c of config.clusters) {
      if (c.kind === 'aggregate') continue;
      const key = JSON.stringify(c);
      this.#configKeys.set(c.name, key);
      const before = sameLocality && previous!.#configKeys.get(c.name) === key ? previous!.#clusters.get(c.name) : undefined;
      if (before) {
        before.applyOverlay(overlay);
        carried.set(c.name, before);
        staticHosts.set(c.name, before.hosts);
        for (const h of before.hosts) this.poolKeys.add(h.pool.key);
        continue;
      }
      const ages = env.ages.track(c.name, c.endpoints.map((e) => e.address));
      staticHosts.set(c.name, c.endpoints.map((e, i) => this.#host(c, e, i, ages[i], registry, overlay)));
    }
    env.ages.retainOnly(new Set(staticHosts.keys()));
    const build = (c: ClusterConfig) => (hosts: UpstreamHost[]) =>
      env.lbFactory({ hosts, config: c.lb as LbConfig, localLocality: env.locality, localLabels: env.labels, clock: env.clock, rng: env.rng });
    for (const c of config.clusters) {
      const before = carried.get(c.name);
      if (before) {
        this.#clusters.set(c.name, before);
        continue;
      }
      const hosts = c.kind === 'aggregate' ? this.#stack(c, staticHosts) : staticHosts.get(c.name)!;
      this.#clusters.set(c.name, new ClusterRuntime(c, hosts, build(c), env.ages));
    }
  }

  #host(c: ClusterConfig, e: ClusterConfig['endpoints'][number], index: number, healthySince: number, registry: PoolRegistry, overlay: HealthOverlay): UpstreamHost {
    const { host, port } = splitAddress(e.address);
    const pool = registry.lazy(c, e.address);
    this.poolKeys.add(pool.key);
    const flags = (ADMIN_FLAGS[e.health ?? 'healthy'] ?? 0) | ((overlay[c.name]?.[e.address] ?? 0) & OVERLAY_MASK);
    return {
      address: e.address, hostname: host, port, weight: e.weight, priority: e.priority,
      locality: e.locality as Locality, labels: e.labels, index, flags, activeRequests: 0, healthySince,
      pool, cluster: c.name, stats: { requests: 0, errors: 0 }, metrics: hostMetrics(c.name, e.address),
    };
  }

  /**
   * Aggregate cluster: members' priorities stacked in failover order (Envoy's aggregate cluster), so
   * member 2's P0 becomes the priority after member 1's lowest.
   */
  #stack(agg: ClusterConfig, staticHosts: Map<string, UpstreamHost[]>): UpstreamHost[] {
    const out: UpstreamHost[] = [];
    let offset = 0;
    for (const memberName of agg.clusters ?? []) {
      const members = staticHosts.get(memberName) ?? [];
      let maxPriority = -1;
      for (const h of members) {
        out.push({ ...h, priority: h.priority + offset, index: out.length, stats: h.stats });
        maxPriority = Math.max(maxPriority, h.priority);
      }
      offset += maxPriority + 1;
    }
    return out;
  }

  get(name: string): ClusterRuntime | undefined {
    return this.#clusters.get(name);
  }

  all(): IterableIterator<ClusterRuntime> {
    return this.#clusters.values();
  }

  applyOverlay(overlay: HealthOverlay): void {
    for (const c of this.#clusters.values()) c.applyOverlay(overlay);
  }
}
