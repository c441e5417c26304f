import type {
  ToPrimary,
  ToWorker,
  OutcomeBatch,
  HostStats,
  SnapshotMessage,
  EndpointsMessage,
} from '../control/ipc/messages.js';
import type { LbState } from '../lb/types.js';
import type { RpcChannel } from '../control/ipc/rpc.js';
import { DataPlane } from './data-plane.js';
import { lbFactory, filterBuilder } from './wiring.js';
import { logger } from '../observability/logger.js';
import type { UpstreamHost } from '../cluster/cluster-manager.js';
import type { Outcome } from '../outlier/outcome.js';
import { configApplyFailures } from '../observability/request-metrics.js';
import { registry } from '../observability/metrics.js';
import { unpackConfig, unpackDelta } from '../config/endpoint-delta.js';

const FLUSH_MS = 100;

/**
 * The worker role: owns a DataPlane and speaks the IPC protocol with the primary. Used both in a
 * forked worker (send = process.send) and in single-process mode (send = direct call).
 */
export class WorkerRuntime {
  readonly dataPlane: DataPlane;
  readonly #send: (msg: ToPrimary) => void;
  #outcomes: OutcomeBatch = {};
  #pendingOutcomes = 0;
  #rpcId = 0;
  readonly #rpcWaiters = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #applying: Promise<unknown> = Promise.resolve();

  constructor(send: (msg: ToPrimary) => void) {
    this.#send = send;
    const rpc: RpcChannel = { request: (topic, payload) => this.#rpc(topic, payload) as Promise<never> };
    this.dataPlane = new DataPlane({
      lbFactory,
      buildFilters: filterBuilder(rpc),
      onOutcome: (h, o) => this.#record(h, o),
    });
    setInterval(() => this.#flush(), FLUSH_MS).unref();
  }

  handle(msg: ToWorker): void {
    switch (msg.t) {
      case 'snapshot':
      case 'endpoints':
        // Apply in arrival order; each change is acknowledged (a snapshot with the listeners it bound).
        this.#applying = this.#applying.then(() => this.#apply(msg));
        return;
      case 'overlay':
        return this.dataPlane.setOverlay(msg.overlay);
      case 'drain':
        void this.dataPlane.drain(msg.deadlineMs).then(() => this.#send({ t: 'drained' }));
        return;
      case 'stats':
        return this.#send({
          t: 'stats-reply',
          id: msg.id,
          stats: this.#stats(),
          lb: this.#lbStates(),
          connections: this.dataPlane.connectionCount(),
          inFlight: this.dataPlane.env.inFlight,
        });
      case 'metrics':
        void registry.getMetricsAsJSON().then((metrics) => this.#send({ t: 'metrics-reply', id: msg.id, metrics }));
        return;
      case 'reload-certs':
        return this.#send({ t: 'certs-reply', id: msg.id, failed: this.dataPlane.reloadCertificates() });
      case 'rpc-reply': {
        const w = this.#rpcWaiters.get(msg.id);
        this.#rpcWaiters.delete(msg.id);
        if (msg.ok) w?.resolve(msg.value);
        else w?.reject(new Error(msg.error));
      }
    }
  }

  async #apply(msg: SnapshotMessage | EndpointsMessage) {
    const { seq, version } = msg;
    // A change built on a state this worker does not have (an earlier apply failed): ask for a whole snapshot.
    const base = msg.t === 'endpoints' ? msg.base : msg.carried?.base;
    if (base !== undefined && base !== this.dataPlane.seq) return this.#send({ t: 'resync' });
    try {
      if (msg.t === 'endpoints') {
        this.dataPlane.applyEndpoints(seq, version, unpackDelta(msg.delta));
        this.#send({ t: 'applied', seq, version });
      } else {
        const config = unpackConfig(msg.config);
        const listeners = await this.dataPlane.apply(
          seq,
          version,
          msg.carried ? this.dataPlane.fillCarried(config, msg.carried.clusters) : config,
        );
        this.#send({ t: 'applied', seq, version, listeners });
      }
    } catch (e) {
      configApplyFailures.inc();
      logger.error({ err: e, version }, 'config apply failed; previous snapshot stays live');
      this.#send({ t: 'applied', seq, version, error: (e as Error).message });
    }
  }

  #record(h: UpstreamHost, o: Outcome) {
    const byCluster = (this.#outcomes[h.cluster] ??= {});
    (byCluster[h.address] ??= []).push(o);
    this.#pendingOutcomes++;
  }

  #flush() {
    if (this.#pendingOutcomes === 0) return;
    const batch = this.#outcomes;
    this.#outcomes = {};
    this.#pendingOutcomes = 0;
    this.#send({ t: 'outcomes', batch });
  }

  #stats(): HostStats {
    const out: HostStats = {};
    const snap = this.dataPlane.snapshot;
    if (!snap) return out;
    for (const c of snap.clusters.all()) {
      const hosts: HostStats[string] = (out[c.name] = {});
      for (const h of c.hosts)
        hosts[h.address] = {
          active: h.activeRequests,
          requests: h.stats.requests,
          errors: h.stats.errors,
          flags: h.flags,
        };
    }
    return out;
  }

  #lbStates(): Record<string, LbState> {
    const out: Record<string, LbState> = {};
    for (const c of this.dataPlane.snapshot?.clusters.all() ?? []) out[c.name] = c.lb.state();
    return out;
  }

  #rpc(topic: string, payload: unknown): Promise<unknown> {
    const id = ++this.#rpcId;
    return new Promise((resolve, reject) => {
      this.#rpcWaiters.set(id, { resolve, reject });
      this.#send({ t: 'rpc', id, topic, payload });
    });
  }
}
