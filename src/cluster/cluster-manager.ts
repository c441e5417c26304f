import type { ClusterConfig, Config } from '../config/schema/index.js';
import type { Clock, Rng } from '../common/clock.js';
import { adminFlags, HostFlag, type Host, type Locality } from './host.js';
import type { LbBuildInput, LbConfig, LoadBalancer } from '../lb/types.js';
import type { EndpointPool, PoolRegistry } from '../pool/pool-registry.js';
import { splitAddress } from '../common/address.js';
import { hostMetrics } from '../observability/request-metrics.js';
import { CircuitBreaker, trackBreakers } from '../pool/circuit-breaker.js';
import type { HostAges } from './host-ages.js';
import type { EndpointDelta } from '../config/endpoint-delta.js';

/** Flags set by the primary (active health checks, outlier ejection): cluster -> address -> flags. */
export type HealthOverlay = Record<string, Record<string, number>>;

/** A host plus what the data plane needs to send to it. */
export interface UpstreamHost extends Host {
  /** The address as a JSON string, for the access log (quoted when the host is made, not per line). */
  readonly logName: string;
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

/** What building clusters needs besides config: the gateway's locality, time, randomness, LB policies, host ages. */
export interface ClusterEnv {
  locality: Locality;
  labels?: Readonly<Record<string, string>>;
  clock: Clock;
  rng: Rng;
  lbFactory: LbFactory;
  ages: HostAges;
}

const OVERLAY_MASK = HostFlag.FAILED_ACTIVE_HC | HostFlag.DEGRADED_ACTIVE_HC | HostFlag.FAILED_OUTLIER_CHECK;

/** One routable cluster of a snapshot: its hosts (all priorities) and the load balancer over them. */
export class ClusterRuntime {
  readonly name: string;
  /** The name as a JSON string, for the access log (quoted here, not per line). */
  readonly logName: string;
  /** The cluster's config; an endpoint delta swaps it (and `hosts`, `lb`) in place. */
  config: ClusterConfig;
  hosts: UpstreamHost[];
  lb: LoadBalancer;
  /** Extracts the hash key for ring_hash/maglev from a request; undefined for other policies. */
  readonly hashKeyOf: HashKeyFn | undefined;
  readonly breaker: CircuitBreaker;
  readonly #build: (hosts: UpstreamHost[]) => LoadBalancer;
  readonly #ages: HostAges;

  constructor(
    config: ClusterConfig,
    hosts: UpstreamHost[],
    build: (hosts: UpstreamHost[]) => LoadBalancer,
    ages: HostAges,
  ) {
    this.name = config.name;
    this.logName = JSON.stringify(config.name);
    this.#ages = ages;
    this.config = config;
    this.hosts = hosts;
    this.#build = build;
    this.lb = build(hosts);
    this.hashKeyOf = compileHashKey(config.lb.hashOn);
    this.breaker = new CircuitBreaker(config.name, config.circuitBreakers);
  }

  /**
   * A new host set (an endpoint delta): the load balancer over it is built first, then both are swapped,
   * so a pick never sees hosts without their selector (Pingora's order). Requests already holding a
   * host finish on it.
   */
  replaceHosts(config: ClusterConfig, hosts: UpstreamHost[]): void {
    const lb = this.#build(hosts);
    this.config = config;
    this.hosts = hosts;
    this.lb = lb;
  }

  /** Apply overlay flags; rebuild the LB only when some host's flags actually changed. */
  applyOverlay(overlay: HealthOverlay): boolean {
    let changed = false;
    for (const h of this.hosts) {
      const next = (h.flags & ~OVERLAY_MASK) | ((overlay[h.cluster]?.[h.address] ?? 0) & OVERLAY_MASK);
      if (next !== h.flags) {
        if (h.flags & HostFlag.FAILED_ACTIVE_HC && !(next & HostFlag.FAILED_ACTIVE_HC))
          h.healthySince = this.#ages.becameHealthy(h.cluster, h.address);
        h.flags = next;
        changed = true;
      }
    }
    if (changed) this.lb = this.#build(this.hosts);
    return changed;
  }
}

/** What a hash key is read from: request headers and the client address. */
export type HashKeyFn = (
  headers: Readonly<Record<string, string | string[] | undefined>>,
  clientIp: string,
) => string | undefined;

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
 * static cluster whose config is the very object the previous snapshot ran (the publisher sends an
 * unchanged cluster as a stub the worker fills with its own object, see SnapshotMessage) and whose
 * gateway locality is the same is carried over as it is, runtime and host objects included (their
 * stats, in-flight counts, circuit breaker and LB state): a change elsewhere, say a route or another
 * cluster, costs that cluster nothing, however many endpoints it has. Aggregate clusters are always
 * rebuilt (cheap: they stack their members' hosts). Endpoint deltas change clusters in place
 * ({@link applyEndpoints}).
 */
export class ClusterManager {
  readonly #clusters = new Map<string, ClusterRuntime>();
  /** Keys of the endpoint pools this snapshot's hosts use (the registry closes the others). */
  readonly poolKeys = new Set<string>();
  readonly #localityKey: string;
  readonly #env: ClusterEnv;

  constructor(
    config: Config,
    registry: PoolRegistry,
    overlay: HealthOverlay,
    env: ClusterEnv,
    previous?: ClusterManager,
  ) {
    this.#env = env;
    this.#localityKey = JSON.stringify([env.locality, env.labels ?? null]);
    const sameLocality = previous !== undefined && previous.#localityKey === this.#localityKey;
    const staticHosts = new Map<string, UpstreamHost[]>();
    const carried = new Map<string, ClusterRuntime>();
    for (const c of config.clusters) {
      if (c.kind === 'aggregate') continue;
      const before = sameLocality ? previous!.#clusters.get(c.name) : undefined;
      if (before && before.config === c) {
        before.applyOverlay(overlay);
        carried.set(c.name, before);
        staticHosts.set(c.name, before.hosts);
        for (const h of before.hosts) this.poolKeys.add(h.pool.key);
        continue;
      }
      const ages = env.ages.track(
        c.name,
        c.endpoints.map((e) => e.address),
      );
      staticHosts.set(
        c.name,
        c.endpoints.map((e, i) => this.#host(c, e, i, ages[i], registry, overlay)),
      );
    }
    env.ages.retainOnly(new Set(staticHosts.keys()));
    for (const c of config.clusters) {
      const before = carried.get(c.name);
      if (before) {
        this.#clusters.set(c.name, before);
        continue;
      }
      const hosts = c.kind === 'aggregate' ? this.#stack(c, staticHosts) : staticHosts.get(c.name)!;
      this.#clusters.set(c.name, new ClusterRuntime(c, hosts, this.#lbBuilder(c), env.ages));
    }
    trackBreakers(this.#clusters);
  }

  #lbBuilder(c: ClusterConfig): (hosts: UpstreamHost[]) => LoadBalancer {
    const env = this.#env;
    return (hosts) =>
      env.lbFactory({
        hosts,
        config: c.lb as LbConfig,
        localLocality: env.locality,
        localLabels: env.labels,
        clock: env.clock,
        rng: env.rng,
      });
  }

  /**
   * Apply an endpoint delta in place. `config` is the snapshot's config with the delta applied. In each
   * changed cluster, a host whose endpoint did not change stays the same object (its in-flight count,
   * stats, flags and slow-start age go on); a changed one (weight, priority, locality, labels, health
   * override) is a new host keeping the old one's stats; removed hosts leave the pool set, so the
   * registry closes their pools once in-flight requests finish (draining). Aggregates over a changed
   * cluster restack. Returns the removed addresses by cluster.
   */
  applyEndpoints(
    config: Config,
    delta: EndpointDelta,
    registry: PoolRegistry,
    overlay: HealthOverlay,
  ): Map<string, Set<string>> {
    const removedBy = new Map<string, Set<string>>();
    for (const c of config.clusters) {
      const d = delta[c.name];
      const rt = this.#clusters.get(c.name);
      if (!d || !rt || c.kind === 'aggregate') continue;
      const removed = new Set(d.remove);
      const upserts = new Map(d.upsert.map((e) => [e.address, e]));
      const hosts: UpstreamHost[] = [];
      for (const h of rt.hosts) {
        if (removed.has(h.address)) {
          this.poolKeys.delete(h.pool.key);
          continue;
        }
        const e = upserts.get(h.address);
        if (!e) {
          hosts.push(h);
          continue;
        }
        upserts.delete(h.address);
        hosts.push({ ...this.#host(c, e, hosts.length, h.healthySince, registry, overlay), stats: h.stats });
      }
      const added = [...upserts.values()];
      const ages = this.#env.ages.track(c.name, [...hosts.map((h) => h.address), ...added.map((e) => e.address)]);
      for (const e of added) hosts.push(this.#host(c, e, hosts.length, ages[hosts.length], registry, overlay));
      rt.replaceHosts(c, hosts);
      removedBy.set(c.name, removed);
    }
    const staticHosts = new Map([...this.#clusters].map(([name, rt]) => [name, rt.hosts]));
    for (const c of config.clusters) {
      if (c.kind !== 'aggregate' || !(c.clusters ?? []).some((m) => delta[m])) continue;
      this.#clusters.get(c.name)?.replaceHosts(c, this.#stack(c, staticHosts));
    }
    return removedBy;
  }

  #host(
    c: ClusterConfig,
    e: ClusterConfig['endpoints'][number],
    index: number,
    healthySince: number,
    registry: PoolRegistry,
    overlay: HealthOverlay,
  ): UpstreamHost {
    const { host, port } = splitAddress(e.address);
    const pool = registry.lazy(c, e.address);
    this.poolKeys.add(pool.key);
    const flags = adminFlags(e.health) | ((overlay[c.name]?.[e.address] ?? 0) & OVERLAY_MASK);
    return {
      address: e.address,
      logName: JSON.stringify(e.address),
      hostname: host,
      port,
      weight: e.weight,
      priority: e.priority,
      locality: e.locality as Locality,
      labels: e.labels,
      index,
      flags,
      activeRequests: 0,
      healthySince,
      pool,
      cluster: c.name,
      stats: { requests: 0, errors: 0 },
      metrics: hostMetrics(c.name, e.address),
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
