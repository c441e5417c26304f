import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config, ListenerConfig } from '../config/schema/index.js';
import { systemClock, systemRng, type Clock, type Rng } from '../common/clock.js';
import type { HealthOverlay, LbFactory, UpstreamHost } from '../cluster/cluster-manager.js';
import { PoolRegistry } from '../pool/pool-registry.js';
import { Snapshot, type FilterBuilder } from '../proxy/snapshot.js';
import { handleRequest } from '../proxy/handle-request.js';
import type { ListenerContext, RequestEnv } from '../proxy/exchange.js';
import { handleUpgrade } from '../proxy/upgrade.js';
import {
  exchangeFinished,
  finalStatus,
  type ExchangeRecord,
  type FinishedExchange,
} from '../observability/exchange-record.js';
import type { Outcome } from '../outlier/outcome.js';
import { ListenerSet } from '../listener/listener-set.js';
import { AccessLog } from '../observability/access-log.js';
import type { TraceExport } from '../observability/trace-export.js';
import type { RequestTracing } from '../observability/tracing.js';
import { configVersion, dropEndpointSeries, retainSeries } from '../observability/request-metrics.js';
import type { EndpointDelta } from '../config/endpoint-delta.js';
import { createPeerResolver } from '../listener/peer.js';
import { normalizerFor } from '../listener/normalize.js';
import { formatXfcc } from '../listener/peer-identity.js';
import { watchHeap } from './overload.js';
import { tokenQueryParams } from '../filters/authn/token-source.js';
import { HostAges } from '../cluster/host-ages.js';
import type { DownstreamRequest, DownstreamResponse } from '../listener/downstream.js';

const NO_HEADERS = { headers: {} };

export interface DataPlaneDeps {
  lbFactory: LbFactory;
  buildFilters: FilterBuilder;
  /** Called for every finished upstream attempt (outlier detection feed). */
  onOutcome(host: UpstreamHost, outcome: Outcome, status: number): void;
  clock?: Clock;
  rng?: Rng;
}

/**
 * A worker's request path: the current snapshot (swapped by reference), the listeners, the pools.
 * In-flight requests hold the snapshot they started with; a new one only affects new requests.
 */
export class DataPlane {
  #snapshot: Snapshot | undefined;
  #seq = 0;
  #overlay: HealthOverlay = {};
  readonly #pools = new PoolRegistry();
  readonly #listeners = new ListenerSet();
  readonly #deps: DataPlaneDeps;
  readonly #clock: Clock;
  readonly #rng: Rng;
  readonly #accessLog = new AccessLog();
  /** Made by the first config with gateway.tracing (see #tracingFor); until then no OpenTelemetry module is loaded. */
  #traceExport: TraceExport | undefined;
  /** The current snapshot's tracing; undefined when gateway.tracing is absent. */
  #tracing: RequestTracing | undefined;
  readonly #ages: HostAges;
  readonly env: RequestEnv;
  #draining = false;
  #idleWaiters: Array<() => void> = [];

  constructor(deps: DataPlaneDeps) {
    this.#deps = deps;
    this.#clock = deps.clock ?? systemClock;
    this.#rng = deps.rng ?? systemRng;
    this.#ages = new HostAges(this.#clock);
    this.env = {
      rng: this.#rng,
      inFlight: 0,
      shedding: false,
      normalize: (p) => p,
      xfcc: formatXfcc,
      recordOutcome: (h, o, s) => deps.onOutcome(h, o, s),
      onFinish: (p) => this.#onFinish(p),
    };
    watchHeap(this.env, () => this.#snapshot?.config.gateway.limits.heapShedPercent ?? 0);
  }

  get snapshot(): Snapshot | undefined {
    return this.#snapshot;
  }

  /** The publisher's sequence number of the state this worker runs (0 before the first). */
  get seq(): number {
    return this.#seq;
  }

  /** Compile and publish a config version; reconcile listeners. Throws (old snapshot stays) on failure. */
  async apply(seq: number, version: number, config: Config): Promise<Record<string, string>> {
    const tracing = await this.#tracingFor(config);
    const next = new Snapshot(
      version,
      config,
      this.#pools,
      this.#overlay,
      {
        clock: this.#clock,
        rng: this.#rng,
        lbFactory: this.#deps.lbFactory,
        buildFilters: this.#deps.buildFilters,
        ages: this.#ages,
        tracing,
      },
      this.#snapshot,
    );
    await this.#listeners.reconcile(config, (l) => this.#handlersFor(l));
    const previous = this.#snapshot;
    this.#snapshot = next;
    this.#tracing = tracing;
    this.#seq = seq;
    this.env.normalize = normalizerFor(config.gateway);
    this.#accessLog.configure(
      config.gateway.accessLog,
      this.#rng,
      config.auth.jwtProviders.flatMap((p) => tokenQueryParams(p.from)),
    );
    configVersion.set(version);
    retainSeries(
      new Set(config.routes.map((r) => r.name)),
      new Set(config.clusters.flatMap((c) => c.endpoints.map((e) => `${c.name}\u0000${e.address}`))),
    );
    this.#pools.retainOnly(next.clusters.poolKeys);
    previous?.close();
    return this.#listeners.addresses();
  }

  /**
   * Fill the clusters a snapshot message carried over (stubs) with the config objects this worker runs:
   * the very same objects, so the ClusterManager keeps their runtimes without comparing anything.
   */
  fillCarried(config: Config, carried: readonly string[]): Config {
    const mine = new Map(this.#snapshot!.config.clusters.map((c) => [c.name, c]));
    const names = new Set(carried);
    return { ...config, clusters: config.clusters.map((c) => (names.has(c.name) ? mine.get(c.name)! : c)) };
  }

  /**
   * Endpoint sets changed and nothing else: the affected clusters swap their hosts and load balancers
   * in place, like a health overlay (no new snapshot: routes, filters and listeners stay as they are).
   */
  applyEndpoints(seq: number, version: number, delta: EndpointDelta): void {
    const snap = this.#snapshot!;
    const removed = snap.applyEndpoints(version, delta, this.#pools, this.#overlay);
    dropEndpointSeries(removed);
    this.#pools.retainOnly(snap.clusters.poolKeys);
    this.#seq = seq;
    configVersion.set(version);
  }

  /** Health/ejection flags from the primary; only affected clusters rebuild their LB. */
  setOverlay(overlay: HealthOverlay): void {
    this.#overlay = overlay;
    this.#snapshot?.clusters.applyOverlay(overlay);
  }

  #handlersFor(l: ListenerConfig) {
    const ctx: ListenerContext = {
      name: l.name,
      proto: l.protocol === 'https' ? 'https' : 'http',
      forwardClientCert: Boolean(l.tls?.forwardClientCert),
      peerOf: createPeerResolver(l),
    };
    return {
      request: (req: DownstreamRequest, res: DownstreamResponse) => {
        const snap = this.#snapshot;
        if (!snap) return void res.destroy();
        handleRequest(snap, ctx, this.env, req, res);
      },
      resolveSni: (sni: string) => {
        const route = this.#snapshot?.tables.get(l.name)?.match(sni, '/', 'GET', NO_HEADERS, '');
        if (!route?.cluster) return 'no_route';
        const host = route.cluster.lb.pick(undefined) as UpstreamHost | undefined;
        if (!host) return 'no_healthy_upstream';
        host.activeRequests++;
        return { hostname: host.hostname, port: host.port, done: () => void host.activeRequests-- };
      },
      upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        const snap = this.#snapshot;
        if (!snap) return void socket.destroy();
        handleUpgrade(snap, ctx, this.env, req, socket, head);
      },
    };
  }

  #onFinish(p: ExchangeRecord) {
    this.env.inFlight--;
    const status = finalStatus(p);
    p.route.counters[(status / 100) | 0]?.inc();
    const elapsedMs = performance.now() - p.startedAt;
    p.route.latency.observe(elapsedMs / 1000);
    this.#accessLog.write(p, status, elapsedMs);
    if (exchangeFinished.hasSubscribers) exchangeFinished.publish({ record: p, status } satisfies FinishedExchange);
    // A forwarded request's spans were started on its way; one answered here gets its SERVER span now.
    if (p.trace !== undefined) p.trace.end(p);
    else if (this.#tracing !== undefined && p.cluster === undefined) this.#tracing.answered(p);
    if (this.#draining && this.env.inFlight === 0) this.#wakeIdle();
  }

  #wakeIdle() {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Re-read TLS certificates of every listener; returns listeners whose reload failed. */
  reloadCertificates(): string[] {
    return this.#listeners.reloadCertificates();
  }

  /** Open downstream connections (for /clusters status and drain). */
  connectionCount(): number {
    return this.#listeners.connectionCount();
  }

  /**
   * Graceful drain: stop accepting, let in-flight requests finish up to the deadline, then close
   * what is left and release upstream pools.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.#draining = true;
    const destroyRest = this.#listeners.stopAccepting();
    if (this.env.inFlight > 0) {
      await Promise.race([
        new Promise<void>((r) => this.#idleWaiters.push(r)),
        new Promise((r) => setTimeout(r, deadlineMs).unref()),
      ]);
    }
    destroyRest();
    await this.#pools.closeAll();
    this.#snapshot?.close();
    await this.#traceExport?.shutdown();
  }

  /**
   * The tracing of `config`, or undefined without gateway.tracing (and a previous export shut down).
   * The OpenTelemetry SDK and exporters are imported when a config first asks for them: a gateway
   * without tracing never loads them (50 to 90 ms and about 4 MB per worker, measured on a 2-core machine).
   */
  async #tracingFor(config: Config): Promise<RequestTracing | undefined> {
    const settings = config.gateway.tracing;
    if (!settings) {
      this.#traceExport?.processorFor(undefined);
      return undefined;
    }
    this.#traceExport ??= new (await import('../observability/trace-export.js')).TraceExport();
    const { RequestTracing } = await import('../observability/tracing.js');
    return new RequestTracing(config, this.#traceExport.processorFor(settings)!);
  }
}
