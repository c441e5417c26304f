import type { Config } from '../config/schema/index.js';
import type { DiscoveryStatus, EndpointSource } from './endpoint-source.js';

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
  protected reconcileLoops<K extends keyof DiscoveryBlocks>(config: Config, kind: K, shared: unknown, start: (cluster: string, block: NonNullable<DiscoveryBlocks[K]>, key: string) => L): void {
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
