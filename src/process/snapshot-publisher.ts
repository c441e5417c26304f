import type { Config, ClusterConfig, EndpointConfig } from '../config/schema/index.js';
import type { EndpointsMessage, SnapshotMessage, ToPrimary, WorkerLink } from '../control/ipc/messages.js';
import type { ConfigStore, ConfigVersion } from '../control/store/config-store.js';
import type { HealthOverlay } from '../cluster/cluster-manager.js';
import {
  diffClusterEndpoints,
  diffEndpoints,
  packConfig,
  packDelta,
  sameCluster,
  type EndpointDelta,
} from '../config/endpoint-delta.js';
import { logger } from '../observability/logger.js';
import { configVersion } from '../observability/request-metrics.js';
import type { WorkerSupervisor } from './workers.js';

const APPLY_TIMEOUT_MS = 15_000;

interface PendingApply {
  seq: number;
  errors: string[];
  check: () => void;
}

/** What every worker is told to run: a config version with the discovered endpoints filled in. */
interface Live {
  seq: number;
  version: number;
  config: Config;
}

/** What workers run, derived from a stored version (e.g. listeners' SVID files): pure and cheap. */
export type DeriveLive = (config: Config) => Config;

/** Runs before a change goes out, with the config workers will run (the health checks' first round). */
export type BeforeSend = (config: Config) => Promise<void> | void;

/**
 * Snapshot publishing: pushes each change to every worker and waits for each one's acknowledgement,
 * so that "publish resolved" means "every worker serves it" (a worker booting later gets the newest
 * at once). A change reaches workers in the smallest form that rebuilds the same state:
 * - only endpoint sets differ (an admin edit of a static cluster, a discovery source): an endpoint
 *   delta, applied to the affected clusters in place;
 * - anything else: a snapshot in which clusters unchanged since the previous one are stubs the worker
 *   fills from what it runs (no 3 MB endpoint list serialized, sent and parsed for a route change).
 * Every message carries the sequence number it builds on; a worker whose state is not that one (an
 * apply failed) asks for a whole snapshot. Also keeps the health/ejection overlay every worker applies
 * on top, the endpoints discovery sources found, and the listener addresses workers bound.
 */
export class SnapshotPublisher {
  readonly listenerAddresses: Record<string, string> = {};
  #overlay: HealthOverlay = {};
  #live: Live | undefined;
  readonly #discovered = new Map<string, EndpointConfig[]>();
  readonly #store: ConfigStore<Config>;
  readonly #workers: WorkerSupervisor;
  readonly #derive: DeriveLive;
  readonly #pending = new Map<number, PendingApply>();
  /** Worker id -> newest sequence number it acknowledged. */
  readonly #applied = new Map<number, number>();

  constructor(store: ConfigStore<Config>, workers: WorkerSupervisor, derive: DeriveLive = (c) => c) {
    this.#store = store;
    this.#workers = workers;
    this.#derive = derive;
    workers.onMessage((msg, link) => this.#onMessage(msg, link));
    workers.onWorkerGone((id) => {
      this.#applied.delete(id);
      this.#checkPending();
    });
  }

  get overlay(): HealthOverlay {
    return this.#overlay;
  }

  /** The config workers run: the newest published version with discovered endpoints filled in. */
  get live(): Config {
    return (this.#live ?? this.#start()).config;
  }

  /** The first state workers boot on: the store's current version; its sequence number. */
  start(): number {
    return (this.#live ?? this.#start()).seq;
  }

  #start(): Live {
    const v = this.#store.current!;
    return (this.#live = { seq: 1, version: v.version, config: this.#derive(this.#withDiscovered(v.config)) });
  }

  /** Push a committed version to every worker; resolves with the workers' apply errors once all applied it. */
  async publish(v: ConfigVersion<Config>, beforeSend?: BeforeSend): Promise<string[]> {
    const prev = this.#live ?? this.#start();
    const config = this.#derive(this.#withDiscovered(v.config));
    await beforeSend?.(config);
    const delta = smallEnough(diffEndpoints(prev.config, config), config);
    const seq = prev.seq + 1;
    this.#live = { seq, version: v.version, config };
    const errors = await this.#send(
      delta
        ? { t: 'endpoints', seq, base: prev.seq, version: v.version, delta: packDelta(delta) }
        : carryOver(prev, seq, v.version, config),
    );
    configVersion.set(v.version);
    if (errors.length) logger.error({ version: v.version, errors }, 'some workers failed to apply the config');
    return errors;
  }

  /**
   * A discovery source's endpoints for a cluster with `discovery`: kept (a later config version gets
   * them too) and, when they differ from what workers run, sent as an endpoint delta.
   */
  async publishEndpoints(cluster: string, endpoints: EndpointConfig[], beforeSend?: BeforeSend): Promise<string[]> {
    this.#discovered.set(cluster, endpoints);
    const prev = this.#live;
    const current = prev?.config.clusters.find((c) => c.name === cluster);
    if (!prev || !current || !isDiscovered(current)) return [];
    const change = diffClusterEndpoints(current.endpoints, endpoints);
    if (!change) return [];
    const config = {
      ...prev.config,
      clusters: prev.config.clusters.map((c) => (c === current ? { ...c, endpoints } : c)),
    };
    await beforeSend?.(config);
    const seq = prev.seq + 1;
    this.#live = { seq, version: prev.version, config };
    const delta = smallEnough({ [cluster]: change }, config);
    const errors = await this.#send(
      delta
        ? { t: 'endpoints', seq, base: prev.seq, version: prev.version, delta: packDelta(delta) }
        : carryOver(prev, seq, prev.version, config),
    );
    if (errors.length) logger.error({ cluster, errors }, 'some workers failed to apply discovered endpoints');
    return errors;
  }

  /** Broadcast one change and wait for every worker's acknowledgement; logs how long that took (benchmarks read it). */
  async #send(msg: SnapshotMessage | EndpointsMessage): Promise<string[]> {
    const t0 = performance.now();
    const done = this.waitForAll(msg.seq);
    this.#workers.broadcast(msg);
    const errors = await done;
    const kind =
      msg.t === 'endpoints' ? 'endpoint delta' : msg.carried ? 'snapshot (unchanged clusters carried)' : 'snapshot';
    logger.info(
      { seq: msg.seq, version: msg.version, kind, workersMs: Math.round(performance.now() - t0) },
      'change applied by every worker',
    );
    return errors;
  }

  setOverlay(overlay: HealthOverlay): void {
    this.#overlay = overlay;
    this.#workers.broadcast({ t: 'overlay', overlay });
  }

  /**
   * Wait until at least the configured number of workers are live and each has acknowledged `seq`
   * or a later one (a respawned worker boots on the newest). Returns worker errors.
   */
  waitForAll(seq: number): Promise<string[]> {
    return new Promise((resolve) => {
      const p: PendingApply = { seq, errors: [], check: () => {} };
      const finish = (extra?: string) => {
        clearTimeout(timer);
        this.#pending.delete(seq);
        resolve(extra ? [...p.errors, extra] : p.errors);
      };
      const timer = setTimeout(() => finish('timed out waiting for workers to apply'), APPLY_TIMEOUT_MS);
      p.check = () => {
        const live = [...this.#workers.links.keys()];
        if (live.length >= this.#workers.count && live.every((id) => (this.#applied.get(id) ?? 0) >= seq)) finish();
      };
      this.#pending.set(seq, p);
      p.check();
    });
  }

  /** The config with each `discovery` cluster's endpoints set to what its source found (none yet: empty). */
  #withDiscovered(config: Config): Config {
    for (const name of this.#discovered.keys())
      if (!config.clusters.some((c) => c.name === name && isDiscovered(c))) this.#discovered.delete(name);
    if (!config.clusters.some(isDiscovered)) return config;
    return {
      ...config,
      clusters: config.clusters.map((c) =>
        isDiscovered(c) ? { ...c, endpoints: this.#discovered.get(c.name) ?? [] } : c,
      ),
    };
  }

  #onMessage(msg: ToPrimary, link: WorkerLink) {
    if (msg.t === 'booted' || msg.t === 'resync') {
      const live = this.#live ?? this.#start();
      link.send({ t: 'snapshot', seq: live.seq, version: live.version, config: packConfig(live.config) });
      if (msg.t === 'booted') link.send({ t: 'overlay', overlay: this.#overlay });
    } else if (msg.t === 'applied') {
      if (msg.listeners) Object.assign(this.listenerAddresses, msg.listeners);
      if (msg.error) this.#pending.get(msg.seq)?.errors.push(msg.error);
      this.#applied.set(link.id, Math.max(this.#applied.get(link.id) ?? 0, msg.seq));
      this.#checkPending();
    }
  }

  #checkPending() {
    for (const p of [...this.#pending.values()]) p.check();
  }
}

/** A cluster whose endpoints come from a discovery source (DNS, Kubernetes) rather than the config. */
function isDiscovered(c: ClusterConfig): boolean {
  return c.discovery !== undefined;
}

/**
 * A delta worth sending as one: it changes fewer entries than the clusters it touches have after it.
 * Replacing most of a big set is cheaper for a worker to rebuild from the whole list (one pass, no
 * removal bookkeeping; measured with 100,000 endpoints replaced: the worst request on an unrelated
 * route waited ~770 ms with the delta, ~400 ms with the rebuild).
 */
function smallEnough(delta: EndpointDelta | undefined, next: Config): EndpointDelta | undefined {
  if (!delta) return undefined;
  for (const c of next.clusters) {
    const d = delta[c.name];
    if (d && d.upsert.length + d.remove.length > Math.max(c.endpoints.length, 16)) return undefined;
  }
  return delta;
}

/** A snapshot message in which clusters equal to the previous live config's are stubs (see SnapshotMessage). */
function carryOver(prev: Live, seq: number, version: number, config: Config): SnapshotMessage {
  const before = new Map(prev.config.clusters.map((c) => [c.name, c]));
  const carried: string[] = [];
  const clusters = config.clusters.map((c) => {
    const old = before.get(c.name);
    if (!old || !sameCluster(old, c)) return c;
    carried.push(c.name);
    return { name: c.name } as ClusterConfig;
  });
  if (!carried.length) return { t: 'snapshot', seq, version, config: packConfig(config) };
  return {
    t: 'snapshot',
    seq,
    version,
    config: packConfig({ ...config, clusters }),
    carried: { base: prev.seq, clusters: carried },
  };
}
