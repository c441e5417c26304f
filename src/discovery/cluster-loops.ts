import type { Config, EndpointConfig } from '../config/schema/index.js';
import type { DiscoveryStatus, EndpointSink, EndpointSource } from './endpoint-source.js';
import { logger } from '../observability/logger.js';
import { discoveredEndpoints } from './metrics.js';

/** One cluster's discovery loop, as a source runs it: `key` is its config (a changed key restarts it). */
export interface ClusterLoop {
  readonly key: string;
  /** The first lookup or list, with its endpoints applied; never rejects. */
  readonly first: Promise<void>;
  status(): DiscoveryStatus;
  stop(): void;
}

type DiscoveryBlocks = NonNullable<Config['clusters'][number]['discovery']>;

/**
 * What every discovery source shares: one loop per cluster with the source's `discovery` block.
 * reconcile keeps a loop whose block (and the gateway-wide settings it uses) is unchanged, stops one
 * whose cluster lost or changed it, and starts the missing ones.
 */
export abstract class ClusterLoopSource<L extends ClusterLoop> implements EndpointSource {
  readonly #loops = new Map<string, L>();

  abstract reconcile(config: Config): void;

  /**
   * Match the loops to the clusters with a `kind` block (aggregates have none of their own);
   * `shared` is the gateway-wide part a loop uses (servers, kubeconfig): a change restarts every loop.
   */
  protected reconcileLoops<K extends keyof DiscoveryBlocks>(
    config: Config,
    kind: K,
    shared: unknown,
    start: (cluster: string, block: NonNullable<DiscoveryBlocks[K]>, key: string) => L,
  ): void {
    const wanted = new Map<string, { block: NonNullable<DiscoveryBlocks[K]>; key: string }>();
    for (const c of config.clusters) {
      const block = c.discovery?.[kind];
      if (block && c.kind !== 'aggregate') wanted.set(c.name, { block, key: JSON.stringify({ block, shared }) });
    }
    for (const [name, loop] of this.#loops) {
      if (wanted.get(name)?.key === loop.key) continue;
      loop.stop();
      this.#loops.delete(name);
    }
    for (const [name, { block, key }] of wanted) {
      if (!this.#loops.has(name)) this.#loops.set(name, start(name, block, key));
    }
  }

  status(cluster: string): DiscoveryStatus | undefined {
    return this.#loops.get(cluster)?.status();
  }

  /**
   * Resolves once every cluster's first lookup or list ended (either way) and its endpoints, if any,
   * were applied: the gateway waits for it (bounded) before it reports ready, as Envoy warms a cluster.
   */
  initialized(): Promise<void> {
    return Promise.all([...this.#loops.values()].map((l) => l.first)).then(() => {});
  }

  /** Stop every loop: timers cleared, requests in flight cancelled; nothing is handed afterwards. */
  stop(): void {
    for (const loop of this.#loops.values()) loop.stop();
    this.#loops.clear();
  }
}

/**
 * What every discovery loop keeps for one cluster: its health (consecutive failures, the last success
 * and error, logged on the first failure and on recovery) and the hand-off to the sink, which passes a
 * set on only when it differs from the last one handed (by the loop's `key` of it) and forgets a set the
 * sink refused, so it is handed again. `status` is what `GET /clusters/{name}/status` shows.
 */
export class DiscoveryRecord {
  readonly #cluster: string;
  readonly #source: string;
  readonly #sink: EndpointSink;
  readonly #countFailure: () => void;
  #failures = 0;
  #handedKey = '';
  #handedCount = 0;
  #lastSuccess: string | null = null;
  #lastError: string | null = null;
  #stopped = false;

  /** `countFailure`: the source's failure metric for this cluster. */
  constructor(cluster: string, source: string, sink: EndpointSink, countFailure: () => void) {
    this.#cluster = cluster;
    this.#source = source;
    this.#sink = sink;
    this.#countFailure = countFailure;
  }

  /** Consecutive failures since the last success (a loop's backoff reads it). */
  get failures(): number {
    return this.#failures;
  }

  status(target: string): DiscoveryStatus {
    return {
      source: this.#source,
      target,
      endpoints: this.#handedCount,
      lastSuccess: this.#lastSuccess,
      lastError: this.#lastError,
      stale: this.#failures > 0,
    };
  }

  succeeded(): void {
    if (this.#failures > 0)
      logger.info({ cluster: this.#cluster, failures: this.#failures }, `${this.#source} discovery recovered`);
    this.#failures = 0;
    this.#lastError = null;
    this.#lastSuccess = new Date().toISOString();
  }

  failed(error: string): void {
    if (this.#failures === 0)
      logger.warn(
        { cluster: this.#cluster, error, endpoints: this.#handedCount },
        `${this.#source} discovery failed; keeping the last endpoints`,
      );
    this.#failures++;
    this.#lastError = error;
    this.#countFailure();
  }

  /**
   * Hand `endpoints` to the sink unless `key` (the set's identity) is the one handed last. Resolves once
   * the workers run it; never rejects: a refused set is forgotten (so it is handed again) and `onRefused`
   * runs, for a loop that would otherwise not look again for a long time.
   */
  hand(endpoints: EndpointConfig[], key: string, onRefused?: () => void): Promise<void> {
    if (this.#stopped || key === this.#handedKey) return Promise.resolve();
    this.#handedKey = key;
    this.#handedCount = endpoints.length;
    discoveredEndpoints.set({ cluster: this.#cluster, source: this.#source }, endpoints.length);
    return this.#sink.setEndpoints(this.#cluster, endpoints, this.#source).catch((e: Error) => {
      if (this.#stopped || this.#handedKey !== key) return;
      this.#handedKey = '';
      this.#lastError = `endpoints not applied: ${e.message}`;
      logger.warn({ cluster: this.#cluster, err: e }, `${this.#source} discovery: the endpoint sink refused a set`);
      onRefused?.();
    });
  }

  stop(): void {
    this.#stopped = true;
    discoveredEndpoints.remove(this.#cluster, this.#source);
  }
}
