import { readFileSync } from 'node:fs';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { Client, Pool, type Dispatcher } from 'undici';
import { H2Origin } from './h2-origin.js';
import { subjectAltNames } from '../common/subject-alt-name.js';
import type { ClusterConfig } from '../config/schema/index.js';
import { msOf } from '../config/duration.js';
import { formatAddress, splitAddress } from '../common/address.js';

/**
 * Upstream connection pools shared across config snapshots: a pool is keyed by everything that
 * shapes its connections, so a reload that leaves an endpoint's settings alone keeps its warm
 * connections. HTTP/1.1 endpoints get an undici Pool; HTTP/2 ones an {@link H2Origin} (one
 * multiplexed session; see there why not undici's own HTTP/2 client).
 */
export class PoolRegistry {
  readonly #pools = new Map<string, Dispatcher>();
  /** HTTP/1.1 connection options by pool key, made once (they read the upstream TLS files). */
  readonly #h1Options = new Map<string, H1Options>();

  /**
   * An endpoint's pool as a host holds it: made on the first request, not when a snapshot is built
   * (an undici Pool costs ~19 KiB and ~25 us: 100,000 endpoints would cost 1.8 GiB before any traffic).
   * `key` identifies it for {@link retainOnly}.
   */
  lazy(cluster: ClusterConfig, address: string): EndpointPool {
    return new EndpointPool(this, cluster, address, poolKey(cluster, address));
  }

  /** The pool for one endpoint of a cluster, created on first use. */
  acquire(cluster: ClusterConfig, address: string, key = poolKey(cluster, address)): Dispatcher {
    let pool = this.#pools.get(key);
    if (!pool) {
      pool =
        cluster.protocol === 'http2'
          ? createH2Origin(cluster, address)
          : new Pool(originOf(cluster, address), {
              connections: cluster.maxConnectionsPerEndpoint,
              ...this.#h1OptionsOf(cluster, key),
            });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /**
   * Send one request on a new connection of its own, closed once the request ends: the resend of a
   * request whose reused keep-alive connection the upstream had just closed (any other idle
   * connection of the pool may be just as stale). HTTP/2 endpoints use their session: a stream the
   * peer did not take is refused there, not lost on a stale connection.
   */
  dispatchFresh(
    cluster: ClusterConfig,
    address: string,
    key: string,
    opts: Dispatcher.DispatchOptions,
    handler: Dispatcher.DispatchHandler,
  ): void {
    if (cluster.protocol === 'http2') return void this.acquire(cluster, address, key).dispatch(opts, handler);
    const client = new Client(originOf(cluster, address), this.#h1OptionsOf(cluster, key));
    client.dispatch(opts, handler);
    // Graceful: the request runs to its end, then the connection closes.
    client.close().catch(() => {});
  }

  /** Close (gracefully: in-flight requests finish) every pool whose key is not in `keep`. */
  retainOnly(keep: ReadonlySet<string>): void {
    for (const [key, pool] of this.#pools) {
      if (keep.has(key)) continue;
      this.#pools.delete(key);
      this.#h1Options.delete(key);
      pool.close().catch(() => {});
    }
  }

  #h1OptionsOf(cluster: ClusterConfig, key: string): H1Options {
    let o = this.#h1Options.get(key);
    if (!o) this.#h1Options.set(key, (o = h1Options(cluster)));
    return o;
  }

  async closeAll(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.allSettled(pools.map((p) => p.close()));
  }
}

/** What a host dispatches through: its endpoint's shared pool, acquired from the registry on first use. */
export class EndpointPool {
  readonly key: string;
  readonly #registry: PoolRegistry;
  readonly #cluster: ClusterConfig;
  readonly #address: string;
  #pool: Dispatcher | undefined;

  constructor(registry: PoolRegistry, cluster: ClusterConfig, address: string, key: string) {
    this.#registry = registry;
    this.#cluster = cluster;
    this.#address = address;
    this.key = key;
  }

  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return (this.#pool ??= this.#registry.acquire(this.#cluster, this.#address, this.key)).dispatch(opts, handler);
  }

  /** Send one request on a new connection of its own (see PoolRegistry.dispatchFresh). */
  dispatchFresh(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    this.#registry.dispatchFresh(this.#cluster, this.#address, this.key, opts, handler);
  }
}

function poolKey(c: ClusterConfig, address: string): string {
  return JSON.stringify([
    address,
    c.protocol,
    c.connectTimeout,
    c.keepAliveTimeout,
    c.maxConnectionsPerEndpoint,
    c.upstreamTls ?? null,
  ]);
}

function createH2Origin(c: ClusterConfig, address: string): H2Origin {
  const { host, port } = splitAddress(address);
  const tls = c.upstreamTls;
  return new H2Origin({
    host,
    port,
    tls: tls ? tlsOptions(tls) : undefined,
    connectTimeoutMs: msOf(c).connectTimeout,
    keepAliveTimeoutMs: msOf(c).keepAliveTimeout,
  });
}

function originOf(c: ClusterConfig, address: string): string {
  const { host, port } = splitAddress(address);
  return `${c.upstreamTls ? 'https' : 'http'}://${formatAddress(host, port)}`;
}

type H1Options = ReturnType<typeof h1Options>;

/** HTTP/1.1 connection options of an endpoint, for its pool and for a one-off fresh connection. */
function h1Options(c: ClusterConfig) {
  const tls = c.upstreamTls;
  return {
    pipelining: 1,
    keepAliveTimeout: msOf(c).keepAliveTimeout,
    keepAliveMaxTimeout: 600_000,
    // Timeouts are set per request from the route; these are only ceilings.
    headersTimeout: 0,
    bodyTimeout: 0,
    connect: { timeout: msOf(c).connectTimeout, ...(tls ? tlsOptions(tls) : {}) },
  };
}

type UpstreamTls = NonNullable<ClusterConfig['upstreamTls']>;

/** TLS origination options; verification failures surface as connect errors (502), never a fallback. */
function tlsOptions(tls: UpstreamTls) {
  const sans = tls.verifySubjectAltName;
  return {
    servername: tls.sni,
    ca: tls.ca ? readFileSync(tls.ca) : undefined,
    cert: tls.cert ? readFileSync(tls.cert) : undefined,
    key: tls.key ? readFileSync(tls.key) : undefined,
    minVersion: tls.minVersion ?? 'TLSv1.2',
    rejectUnauthorized: !tls.insecureSkipVerify,
    checkServerIdentity: sans?.length
      ? (_host: string, cert: PeerCertificate) => verifySans(cert, sans)
      : (host: string, cert: PeerCertificate) => checkServerIdentity(tls.sni ?? host, cert),
  };
}

/**
 * Accept the peer only if one of its SANs (URI, DNS or IP) is in the allow-list. Read through the one
 * SAN parser: split on ', ', a quoted URI "spiffe://a, URI:spiffe://b" passed as a second entry.
 */
export function verifySans(
  cert: Pick<PeerCertificate, 'subjectaltname'>,
  allowed: readonly string[],
): Error | undefined {
  const sans = subjectAltNames(cert.subjectaltname, ['URI', 'DNS', 'IP Address']);
  if (sans.some((s) => allowed.includes(s))) return undefined;
  const err = new Error(`upstream certificate SANs [${sans.join(', ')}] match none of [${allowed.join(', ')}]`);
  (err as NodeJS.ErrnoException).code = 'ERR_TLS_CERT_ALTNAME_INVALID';
  return err;
}
