import { promises as dnsPromises } from 'node:dns';
import type { Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { Config, EndpointConfig } from '../config/schema/index.js';
import { EndpointSchema, type DnsDiscoverySchema } from '../config/schema/cluster.js';
import { msOf } from '../config/duration.js';
import { backoffDelay } from '../common/backoff.js';
import { formatAddress } from '../common/address.js';
import { systemRng, type Rng } from '../common/clock.js';
import { dnsResolutionFailures } from './metrics.js';
import type { DiscoveryStatus, EndpointSink } from './endpoint-source.js';
import { ClusterLoopSource, DiscoveryRecord, type ClusterLoop } from './cluster-loops.js';

type DnsDiscoveryConfig = Static<typeof DnsDiscoverySchema>;

/** Tuning of the lookups; the defaults suit production, tests may shorten them. */
export interface DnsDiscoveryOptions {
  /**
   * First try's timeout of one query, in ms; c-ares lengthens it on the retry. 400 ms and 2 tries give
   * up on a server that never answers after 1.6 s (measured, Node 20's c-ares 1.34; 500 ms took 2.0 s).
   * The Resolver default, 5 s and 4 tries, would hold a lookup for over a minute.
   */
  queryTimeoutMs?: number;
  queryTries?: number;
  /** Jitter of the failure backoff. */
  rng?: Rng;
}

/** The most a failing lookup's retry waits beyond `refresh` (Envoy: dns_failure_refresh_rate.max_interval). */
const FAILURE_BACKOFF_MAX_MS = 30_000;

/** DNS answers that mean "this name has no address", as opposed to "the lookup failed". */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND']);

/**
 * DNS discovery of cluster endpoints, Envoy's STRICT_DNS and LOGICAL_DNS, in the primary: one lookup
 * loop per cluster with `discovery.dns`, handing each new endpoint set to the sink.
 *
 * Every `refresh` the name is resolved for A and AAAA records at once (one answering while the other
 * fails is an answer). `strict`: every address is an endpoint, sorted; `logical`: the first address
 * only (the first A record, else the first AAAA). A set equal to the last one handed is not handed
 * again. A lookup that fails or comes back empty keeps the last endpoints (the sink is not called),
 * marks the cluster stale and retries after `refresh` plus a jittered exponential backoff
 * (refresh 5 s: 5-10 s, then 5-15 s, 5-25 s, ... up to 5-35 s), reset by the next success.
 * The record TTL is not used, as Envoy's default `respect_dns_ttl: false`.
 */
export class DnsDiscovery extends ClusterLoopSource<DnsWatch> {
  readonly #sink: EndpointSink;
  readonly #options: Required<DnsDiscoveryOptions>;

  constructor(sink: EndpointSink, options: DnsDiscoveryOptions = {}) {
    super();
    this.#sink = sink;
    this.#options = { queryTimeoutMs: 400, queryTries: 2, rng: systemRng, ...options };
  }

  /** Start, stop or restart each cluster's loop so they match `config` (a changed block or server list restarts). */
  reconcile(config: Config): void {
    const servers = config.gateway.dns?.servers;
    this.reconcileLoops(
      config,
      'dns',
      servers,
      (name, dns, key) => new DnsWatch(name, dns, servers, key, this.#sink, this.#options),
    );
  }
}

/** What one lookup found: the addresses (A first, then AAAA), or why there are none. */
type Answer = { addresses: string[] } | { error: string };

/** The lookup loop of one cluster: one query pair at a time, the next one scheduled when it ends. */
class DnsWatch implements ClusterLoop {
  readonly key: string;
  readonly #dns: DnsDiscoveryConfig;
  readonly #refreshMs: number;
  readonly #rng: Rng;
  readonly #resolver: dnsPromises.Resolver;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** The first lookup, with its endpoints applied (see DnsDiscovery.initialized). */
  readonly first: Promise<void>;
  readonly #record: DiscoveryRecord;

  constructor(
    cluster: string,
    dns: DnsDiscoveryConfig,
    servers: string[] | undefined,
    key: string,
    sink: EndpointSink,
    options: Required<DnsDiscoveryOptions>,
  ) {
    this.key = key;
    this.#dns = dns;
    this.#refreshMs = msOf(dns).refresh;
    this.#rng = options.rng;
    this.#record = new DiscoveryRecord(cluster, 'dns', sink, () => dnsResolutionFailures.inc({ cluster }));
    this.#resolver = new dnsPromises.Resolver({ timeout: options.queryTimeoutMs, tries: options.queryTries });
    if (servers) this.#resolver.setServers(servers);
    this.first = this.#lookup();
  }

  status(): DiscoveryStatus {
    return this.#record.status(`${this.#dns.name}:${this.#dns.port} (${this.#dns.mode})`);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#resolver.cancel();
    this.#record.stop();
  }

  async #lookup(): Promise<void> {
    const answer = await resolveAddresses(this.#resolver, this.#dns.name);
    if (this.#stopped) return;
    let handed: Promise<void> | undefined;
    if ('addresses' in answer) handed = this.#succeeded(answer.addresses);
    else this.#record.failed(answer.error);
    const failures = this.#record.failures;
    const delay =
      failures === 0
        ? this.#refreshMs
        : this.#refreshMs + backoffDelay(failures, this.#refreshMs, FAILURE_BACKOFF_MAX_MS, this.#rng);
    this.#timer = setTimeout(() => void this.#lookup(), delay);
    this.#timer.unref();
    await handed;
  }

  /** The sink's promise for the set found (resolved at once when it is the set handed last). */
  #succeeded(addresses: string[]): Promise<void> {
    this.#record.succeeded();
    const chosen = this.#dns.mode === 'logical' ? addresses.slice(0, 1) : [...new Set(addresses)].sort();
    const endpoints = chosen.map((ip) => endpointOf(ip, this.#dns.port));
    // A refused set is handed again by the next lookup, `refresh` later.
    return this.#record.hand(endpoints, endpoints.map((e) => e.address).join(','));
  }
}

/**
 * Resolve A and AAAA together. Any address is an answer; none is an error: the first failure's
 * message (timeout, refused, SERVFAIL), else "no A or AAAA records" when both said NXDOMAIN/NODATA.
 */
async function resolveAddresses(resolver: dnsPromises.Resolver, name: string): Promise<Answer> {
  const [v4, v6] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
  const addresses = [v4, v6].flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
  if (addresses.length) return { addresses };
  const errors = [v4, v6].flatMap((r) => (r.status === 'rejected' ? [r.reason as NodeJS.ErrnoException] : []));
  const failure = errors.find((e) => !NO_RECORDS.has(e.code ?? ''));
  return {
    error: failure
      ? failure.message
      : `no A or AAAA records for ${name}${errors[0]?.code ? ` (${errors[0].code})` : ''}`,
  };
}

/** The endpoint of one address, with EndpointSchema's defaults (weight 1, priority 0, empty locality and labels). */
function endpointOf(ip: string, port: number): EndpointConfig {
  return Value.Default(EndpointSchema, { address: formatAddress(ip, port) }) as EndpointConfig;
}
