import { availableParallelism } from 'node:os';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { registry } from '../observability/metrics.js';
import type { Config, EndpointConfig } from '../config/schema/index.js';
import type { ToPrimary } from '../control/ipc/messages.js';
import { ConfigStore, type ConfigVersion } from '../control/store/config-store.js';
import type { HealthOverlay } from '../cluster/cluster-manager.js';
import type { RpcServer } from '../control/ipc/rpc.js';
import { WorkerSupervisor } from './workers.js';
import { SnapshotPublisher, type BeforeSend, type DeriveLive } from './snapshot-publisher.js';

export interface PrimaryOptions {
  stateDir: string;
  /** Override gateway.workers (tests); 1 = single process. */
  workers?: number;
  /** Entry module for forked workers. */
  workerExec?: string;
  /** What workers run, derived from each stored version (default: the version itself). */
  deriveLive?: DeriveLive;
}

/**
 * The primary role: the config store, the worker supervisor (workers.ts) and the snapshot publisher
 * (snapshot-publisher.ts) over them. What the admin API and the wiring read of the primary goes
 * through here; each part keeps its own state.
 */
export class Primary {
  readonly store: ConfigStore;
  readonly workers = new WorkerSupervisor();
  readonly publisher: SnapshotPublisher;
  readonly #opts: PrimaryOptions;

  constructor(opts: PrimaryOptions) {
    this.#opts = opts;
    this.store = new ConfigStore(opts.stateDir);
    this.publisher = new SnapshotPublisher(this.store, this.workers, opts.deriveLive);
  }

  get current(): ConfigVersion {
    return this.store.current!;
  }

  get links() {
    return this.workers.links;
  }

  get isSingleProcess(): boolean {
    return this.workers.isSingleProcess;
  }

  get rpc(): RpcServer {
    return this.workers.rpc;
  }

  get listenerAddresses(): Record<string, string> {
    return this.publisher.listenerAddresses;
  }

  get overlay(): HealthOverlay {
    return this.publisher.overlay;
  }

  /** True once a drain started: no new config is published (it would re-bind listeners). */
  get draining(): boolean {
    return this.workers.draining;
  }

  onWorkerMessage(fn: (msg: ToPrimary, worker: number) => void): void {
    this.workers.onMessage((msg, link) => fn(msg, link.id));
  }

  /** Start workers on the current version and wait until all serve it. */
  async startWorkers(config: Config): Promise<void> {
    const n =
      this.#opts.workers ?? (config.gateway.workers === 'auto' ? availableParallelism() : config.gateway.workers);
    const ready = this.publisher.waitForAll(this.publisher.start());
    this.workers.start(n, this.#opts.workerExec);
    await ready;
  }

  /** The config workers run: the current version with the endpoints discovery sources found. */
  get live(): Config {
    return this.publisher.live;
  }

  publish(v: ConfigVersion, beforeSend?: BeforeSend): Promise<string[]> {
    return this.publisher.publish(v, beforeSend);
  }

  publishEndpoints(cluster: string, endpoints: EndpointConfig[], beforeSend?: BeforeSend): Promise<string[]> {
    return this.publisher.publishEndpoints(cluster, endpoints, beforeSend);
  }

  setOverlay(overlay: HealthOverlay): void {
    this.publisher.setOverlay(overlay);
  }

  collect<R extends ToPrimary>(t: 'stats' | 'metrics' | 'reload-certs', timeoutMs?: number): Promise<R[]> {
    return this.workers.collect<R>(t, timeoutMs);
  }

  /**
   * Every process's metrics in one registry: each worker's (those that answer within collect's
   * timeout) and this process's own, summed by prom-client's AggregatorRegistry. The admin /metrics
   * renders it; the hub report summarizes it.
   */
  async metrics(): Promise<Registry> {
    const replies = await this.collect<{ t: 'metrics-reply'; id: number; metrics: unknown }>('metrics');
    const own = await registry.getMetricsAsJSON();
    // In single-process mode the worker shares this registry: do not count it twice.
    const sets = this.isSingleProcess ? [own] : [own, ...replies.map((r) => r.metrics)];
    return AggregatorRegistry.aggregate(sets as Parameters<typeof AggregatorRegistry.aggregate>[0]);
  }

  drain(deadlineMs: number): Promise<void> {
    return this.workers.drain(deadlineMs);
  }
}
