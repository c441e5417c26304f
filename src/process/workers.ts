import cluster from 'node:cluster';
import type { ToPrimary, ToWorker, WorkerLink } from '../control/ipc/messages.js';
import type { RpcServer } from '../control/ipc/rpc.js';
import { logger } from '../observability/logger.js';
import { WorkerRuntime } from './worker-runtime.js';

const RESPAWN_MIN_LIFE_MS = 2000;
const RESPAWN_BACKOFF_MS = 1000;

/**
 * Worker supervision: forks the workers (or runs the worker role in this process for one worker),
 * respawns one that exits (with a back-off when it died young), delivers their messages to
 * subscribers, answers their request/reply calls, gathers replies to queries, and drains them.
 * What the workers run is the snapshot publisher's business.
 */
export class WorkerSupervisor {
  readonly links = new Map<number, WorkerLink>();
  readonly #messageHandlers: Array<(msg: ToPrimary, link: WorkerLink) => void> = [];
  readonly #goneHandlers: Array<(id: number) => void> = [];
  // biome-ignore lint/suspicious/noExplicitAny: as RpcServer.handle (control/ipc/rpc.ts)
  readonly #rpcHandlers = new Map<string, (payload: any, worker: number) => unknown>();
  readonly #queries = new Map<number, (msg: ToPrimary) => void>();
  #queryId = 0;
  #count = 1;
  #drain: { deadlineMs: number; drained: Set<number>; done: Promise<void>; check: () => void } | undefined;
  #stopping = false;

  /** How many workers should be live (the configured count, not how many are right now). */
  get count(): number {
    return this.#count;
  }

  /** True when the worker role runs inside this process (gateway.workers: 1). */
  get isSingleProcess(): boolean {
    return this.#count === 1;
  }

  /** True once a drain started. */
  get draining(): boolean {
    return this.#drain !== undefined;
  }

  /** Request/reply handlers for workers (e.g. rate-limit token leasing), by topic. */
  readonly rpc: RpcServer = { handle: (topic, fn) => void this.#rpcHandlers.set(topic, fn) };

  /** Subscribe to every worker message (after the supervisor's own handling). */
  onMessage(fn: (msg: ToPrimary, link: WorkerLink) => void): void {
    this.#messageHandlers.push(fn);
  }

  /** Subscribe to worker exits (a worker that will not acknowledge anything any more). */
  onWorkerGone(fn: (id: number) => void): void {
    this.#goneHandlers.push(fn);
  }

  /** Start `n` workers (1: the worker role in this process). */
  start(n: number, workerExec: string | undefined): void {
    this.#count = n;
    if (n === 1) return this.#attach(localLink());
    cluster.setupPrimary({ exec: workerExec, args: ['worker'] });
    for (let i = 0; i < n; i++) this.#fork();
  }

  broadcast(msg: ToWorker): void {
    for (const l of this.links.values()) l.send(msg);
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

  /** Drain every worker (stop accepting, finish in-flight up to the deadline). */
  async drain(deadlineMs: number): Promise<void> {
    if (this.#drain) return this.#drain.done;
    this.#stopping = true;
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    this.#drain = {
      deadlineMs,
      drained: new Set(),
      done,
      check: () => {
        if ([...this.links.keys()].every((id) => this.#drain!.drained.has(id))) resolve();
      },
    };
    this.broadcast({ t: 'drain', deadlineMs });
    this.#drain.check();
    await Promise.race([done, new Promise((r) => setTimeout(r, deadlineMs + 2000).unref())]);
  }

  #fork() {
    const w = cluster.fork();
    const bornAt = Date.now();
    const link: WorkerLink = {
      id: w.id,
      // A worker killed a moment ago may still look connected: the message is then lost (its exit
      // is handled below), and the callback keeps the failed send from becoming an 'error' event,
      // which with no listener would bring the primary down.
      send: (msg) => {
        if (w.isConnected()) w.send(msg, ignoreSendError);
      },
      onMessage: (fn) => w.on('message', fn),
    };
    w.on('exit', (code, signal) => {
      this.links.delete(w.id);
      for (const fn of this.#goneHandlers) fn(w.id);
      this.#drain?.check();
      if (this.#stopping) return;
      // A worker that dies right after starting would otherwise respawn in a tight loop.
      const delay = Date.now() - bornAt < RESPAWN_MIN_LIFE_MS ? RESPAWN_BACKOFF_MS : 0;
      logger.warn({ worker: w.id, code, signal, respawnInMs: delay }, 'worker exited; starting a replacement');
      setTimeout(() => {
        if (!this.#stopping) this.#fork();
      }, delay);
    });
    this.#attach(link);
  }

  #attach(link: WorkerLink) {
    this.links.set(link.id, link);
    link.onMessage((msg) => this.#onMessage(link, msg));
  }

  #onMessage(link: WorkerLink, msg: ToPrimary) {
    if (msg.t === 'drained') {
      this.#drain?.drained.add(link.id);
      this.#drain?.check();
    } else if (msg.t === 'booted' && this.#drain) {
      // A worker that boots during a drain (a replacement forked just before) only needs to stop.
      return link.send({ t: 'drain', deadlineMs: this.#drain.deadlineMs });
    } else if (msg.t === 'rpc') {
      this.#answerRpc(link, msg);
    } else if (msg.t === 'stats-reply' || msg.t === 'metrics-reply' || msg.t === 'certs-reply') {
      this.#queries.get(msg.id)?.(msg);
    }
    for (const h of this.#messageHandlers) h(msg, link);
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

/** A message to a worker that is going away is lost; its exit, not the send, says what happened. */
function ignoreSendError(): void {}
