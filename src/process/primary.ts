import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { Config } from '../config/schema/index.js';
import type { ToPrimary, ToWorker, WorkerLink } from '../control/ipc/messages.js';
import { ConfigStore, type ConfigVersion } from '../control/store/config-store.js';
import { WorkerRuntime } from './worker-runtime.js';
import { logger } from '../observability/logger.js';
import { configVersion } from '../observability/request-metrics.js';
import type { HealthOverlay } from '../cluster/cluster-manager.js';
import type { RpcServer } from '../control/ipc/rpc.js';

const APPLY_TIMEOUT_MS = 15_000;
const RESPAWN_MIN_LIFE_MS = 2000;
const RESPAWN_BACKOFF_MS = 1000;

export interface PrimaryOptions {
  stateDir: string;
  /** Override gateway.workers (tests); 1 = single process. */
  workers?: number;
  /** Entry module for forked workers. */
  workerExec?: string;
}

interface PendingApply {
  version: number;
  errors: string[];
  check: () => void;
}

/**
 * The primary role: owns the config store and pushes snapshots to workers, waiting for every
 * worker's acknowledgement so that "the call returned" means "every worker serves it".
 */
export class Primary {
  readonly store: ConfigStore;
  readonly links = new Map<number, WorkerLink>();
  readonly listenerAddresses: Record<string, string> = {};
  overlay: HealthOverlay = {};
  readonly #opts: PrimaryOptions;
  readonly #pending = new Map<number, PendingApply>();
  readonly #applied = new Map<number, number>();
  readonly #queries = new Map<number, (msg: ToPrimary) => void>();
  #queryId = 0;
  readonly #handlers: Array<(msg: ToPrimary, worker: number) => void> = [];
  #workerCount = 1;
  #drain: { deadlineMs: number; drained: Set<number>; done: Promise<void>; check: () => void } | undefined;
  #stopping = false;

  constructor(opts: PrimaryOptions) {
    this.#opts = opts;
    this.store = new ConfigStore(opts.stateDir);
  }

  /** True when the worker role runs inside this process (gateway.workers: 1). */
  get isSingleProcess(): boolean {
    return this.#workerCount === 1;
  }

  get current(): ConfigVersion {
    return this.store.current!;
  }

  /** Request/reply handlers for workers (e.g. rate-limit token leasing), by topic. */
  readonly rpc: RpcServer = { handle: (topic, fn) => void this.#rpcHandlers.set(topic, fn) };
  readonly #rpcHandlers = new Map<string, (payload: any, worker: number) => unknown>();

  /** Subscribe to worker messages (outcomes, rpc) from any worker. */
  onWorkerMessage(fn: (msg: ToPrimary, worker: number) => void): void {
    this.#handlers.push(fn);
  }

  /** Start workers on the current version and wait until all serve it. */
  async startWorkers(config: Config): Promise<void> {
    const n = this.#opts.workers ?? (config.gateway.workers === 'auto' ? availableParallelism() : config.gateway.workers);
    this.#workerCount = n;
    if (n === 1) this.#attach(localLink());
    else {
      cluster.setupPrimary({ exec: this.#opts.workerExec, args: ['worker'] });
      for (let i = 0; i < n; i++) this.#fork();
    }
    await this.#waitAll(this.current.version);
  }

  #fork() {
    const w = cluster.fork();
    const bornAt = Date.now();
    const link: WorkerLink = {
      id: w.id,
      send: (msg) => { if (w.isConnected()) w.send(msg); },
      onMessage: (fn) => w.on('message', fn),
    };
    w.on('exit', (code, signal) => {
      this.links.delete(w.id);
      this.#forget(w.id);
      if (this.#stopping) return;
      // A worker that dies right after starting would otherwise respawn in a tight loop.
      const delay = Date.now() - bornAt < RESPAWN_MIN_LIFE_MS ? RESPAWN_BACKOFF_MS : 0;
      logger.warn({ worker: w.id, code, signal, respawnInMs: delay }, 'worker exited; starting a replacement');
      setTimeout(() => { if (!this.#stopping) this.#fork(); }, delay);
    });
    this.#attach(link);
  }

  #attach(link: WorkerLink) {
    this.links.set(link.id, link);
    link.onMessage((msg) => this.#onMessage(link, msg));
    this.#checkPending();
  }

  #onMessage(link: WorkerLink, msg: ToPrimary) {
    if (msg.t === 'drained') {
      this.#drain?.drained.add(link.id);
      this.#drain?.check();
    } else if (msg.t === 'booted' && this.#drain) {
      // A worker that boots during a drain (a replacement forked just before) only needs to stop.
      link.send({ t: 'drain', deadlineMs: this.#drain.deadlineMs });
    } else if (msg.t === 'booted') {
      link.send({ t: 'snapshot', version: this.current.version, config: this.current.config });
      link.send({ t: 'overlay', overlay: this.overlay });
    } else if (msg.t === 'applied') {
      if (msg.listeners) Object.assign(this.listenerAddresses, msg.listeners);
      if (msg.error) this.#pending.get(msg.version)?.errors.push(msg.error);
      this.#applied.set(link.id, Math.max(this.#applied.get(link.id) ?? 0, msg.version));
      this.#checkPending();
    } else if (msg.t === 'rpc') {
      this.#answerRpc(link, msg);
    } else if (msg.t === 'stats-reply' || msg.t === 'metrics-reply' || msg.t === 'certs-reply') {
      this.#queries.get(msg.id)?.(msg);
    }
    for (const h of this.#handlers) h(msg, link.id);
  }

  #answerRpc(link: WorkerLink, msg: Extract<ToPrimary, { t: 'rpc' }>) {
    const fn = this.#rpcHandlers.get(msg.topic);
    if (!fn) return link.send({ t: 'rpc-reply', id: msg.id, ok: false, error: `no handler for ${msg.topic}` });
    Promise.resolve()
      .then(() => fn(msg.payload, link.id))
      .then(
        (value) => link.send({ t: 'rpc-reply', id: msg.id, ok: true, value }),
        (e: Error) => link.send({ t: 'rpc-reply', id: msg.id, ok: false, error: e.message }),
      );
  }

  #forget(id: number) {
    this.#applied.delete(id);
    this.#checkPending();
    this.#drain?.check();
  }

  #checkPending() {
    for (const p of [...this.#pending.values()]) p.check();
  }

  /**
   * Wait until at least the configured number of workers are live and each has acknowledged
   * `version` or a later one (a respawned worker boots on the newest). Returns worker errors.
   */
  #waitAll(version: number): Promise<string[]> {
    return new Promise((resolve) => {
      const p: PendingApply = { version, errors: [], check: () => {} };
      const finish = (extra?: string) => {
        clearTimeout(timer);
        this.#pending.delete(version);
        resolve(extra ? [...p.errors, extra] : p.errors);
      };
      const timer = setTimeout(() => finish('timed out waiting for workers to apply'), APPLY_TIMEOUT_MS);
      p.check = () => {
        const live = [...this.links.keys()];
        if (live.length >= this.#workerCount && live.every((id) => (this.#applied.get(id) ?? 0) >= version)) finish();
      };
      this.#pending.set(version, p);
      p.check();
    });
  }

  /** Runs before a version is pushed (health checks of new endpoints get their first round). */
  beforePublish: ((config: Config) => Promise<void>) | undefined;

  /** Push a committed version to every worker; resolves when all applied it. */
  async publish(v: ConfigVersion): Promise<string[]> {
    await this.beforePublish?.(v.config);
    const done = this.#waitAll(v.version);
    this.broadcast({ t: 'snapshot', version: v.version, config: v.config });
    const errors = await done;
    configVersion.set(v.version);
    if (errors.length) logger.error({ version: v.version, errors }, 'some workers failed to apply the config');
    return errors;
  }

  /**
   * Ask every live worker for stats or metrics and gather the replies that arrive within the
   * timeout: a worker being restarted must not make /metrics or /status fail.
   */
  collect<R extends ToPrimary>(t: 'stats' | 'metrics' | 'reload-certs', timeoutMs = 1000): Promise<R[]> {
    const id = ++this.#queryId;
    const replies: R[] = [];
    const expected = this.links.size;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#queries.delete(id);
        resolve(replies);
      };
      const timer = setTimeout(done, timeoutMs);
      this.#queries.set(id, (msg) => {
        replies.push(msg as R);
        if (replies.length >= expected) done();
      });
      if (expected === 0) return done();
      this.broadcast({ t, id });
    });
  }

  broadcast(msg: ToWorker): void {
    for (const l of this.links.values()) l.send(msg);
  }

  setOverlay(overlay: HealthOverlay): void {
    this.overlay = overlay;
    this.broadcast({ t: 'overlay', overlay });
  }

  /** Drain every worker (stop accepting, finish in-flight up to the deadline). */
  /** True once a drain started: no new config is published (it would re-bind listeners). */
  get draining(): boolean {
    return this.#drain !== undefined;
  }

  async drain(deadlineMs: number): Promise<void> {
    if (this.#drain) return this.#drain.done;
    this.#stopping = true;
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    this.#drain = { deadlineMs, drained: new Set(), done, check: () => { if ([...this.links.keys()].every((id) => this.#drain!.drained.has(id))) resolve(); } };
    this.broadcast({ t: 'drain', deadlineMs });
    this.#drain.check();
    await Promise.race([done, new Promise((r) => setTimeout(r, deadlineMs + 2000).unref())]);
  }
}

let localId = 0;

/** Single-process mode: the worker role runs in this process behind the same message protocol. */
function localLink(): WorkerLink {
  const listeners: Array<(msg: ToPrimary) => void> = [];
  const runtime = new WorkerRuntime((msg) => queueMicrotask(() => listeners.forEach((l) => l(msg))));
  const link: WorkerLink = {
    id: ++localId,
    send: (msg) => queueMicrotask(() => runtime.handle(structuredClone(msg))),
    onMessage: (fn) => {
      listeners.push(fn);
      if (listeners.length === 1) queueMicrotask(() => fn({ t: 'booted' }));
    },
  };
  return link;
}
