import type http from 'node:http';
import { backoffDelay } from '../../common/backoff.js';
import type { Rng } from '../../common/clock.js';
import { logger } from '../../observability/logger.js';
import type { Ack, FleetSummary, GatewayReport, Snapshot } from '../../hub/protocol.js';
import { HubCallError, HubConnection, type HubConnectionOptions } from './hub-connection.js';
import { SseParser } from './sse.js';

const log = logger.child({ component: 'hub-client' });
/** The hub pings every 15 s; a silent watch for this long is dead even if TCP has not noticed. */
const WATCH_IDLE_MS = 45000;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 10000;

export interface HubClientOptions extends HubConnectionOptions {
  reportIntervalMs: number;
}

export interface HubClientHandlers {
  report(): GatewayReport;
  /** Traffic numbers sent with every report; a failure to gather them sends the report without. */
  summary?(): Promise<FleetSummary>;
  /** Apply a snapshot; resolve with validation errors to reject it (it is then not applied). */
  apply(snapshot: Snapshot): Promise<Ack['errors'] | undefined>;
}

/**
 * A gateway's side of the hub protocol: report, watch, apply, ack, and on any failure reconnect
 * with exponential backoff and full jitter while the gateway keeps serving its last good config.
 */
export class HubClient {
  readonly #opts: HubClientOptions;
  readonly #handlers: HubClientHandlers;
  readonly #rng: Rng;
  readonly #hub: HubConnection;
  #stopped = false;
  #watch?: http.ClientRequest;
  #reportTimer?: NodeJS.Timeout;
  #lastReport = '';
  #applying: Promise<unknown> = Promise.resolve();
  connected = false;

  constructor(opts: HubClientOptions, handlers: HubClientHandlers, rng: Rng) {
    this.#opts = opts;
    this.#handlers = handlers;
    this.#rng = rng;
    this.#hub = new HubConnection(opts);
  }

  start(): void {
    this.#reportTimer = setInterval(() => void this.reportNow(true), this.#opts.reportIntervalMs);
    this.#reportTimer.unref();
    void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#reportTimer);
    this.#watch?.destroy();
    this.#hub.close();
  }

  /** Send the report if it changed (or `force`); failures are left to the watch loop to recover. */
  async reportNow(force = false): Promise<void> {
    try {
      await this.#report(force);
    } catch (e) {
      log.debug({ err: (e as Error).message }, 'report failed');
    }
  }

  /** The summary's counters change all the time: whether a report changed is judged without it. */
  async #report(force: boolean): Promise<void> {
    const report = this.#handlers.report();
    const state = JSON.stringify(report);
    if (!force && state === this.#lastReport) return;
    const summary = await this.#handlers.summary?.().catch((e: Error) => {
      log.debug({ err: e.message }, 'no traffic summary for this report');
      return undefined;
    });
    try {
      await this.#hub.call('report', summary ? JSON.stringify({ ...report, summary }) : state);
    } catch (e) {
      // A hub that refuses the summary (an older or stricter hub) must not keep the gateway unmanaged.
      if (!summary || !(e instanceof HubCallError) || e.status !== 400) throw e;
      log.warn({ err: e.message }, 'the hub refused the traffic summary; reporting without it');
      await this.#hub.call('report', state);
    }
    this.#lastReport = state;
  }

  /**
   * Report, then watch; on any failure move to the next hub replica (failoverUrls), back off (full
   * jitter; the backoff grows once per round of the replicas, so the next replica is tried at once)
   * and start again. The replica watched next sends its current snapshot, which is applied (or found
   * already applied) and acknowledged as usual.
   */
  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#stopped) {
      const hub = this.#hub.hubUrl;
      try {
        await this.#report(true);
        await this.#watchOnce(() => {
          attempt = 0;
        });
      } catch (e) {
        if (this.connected || attempt === 0)
          log.warn({ hub, err: (e as Error).message }, 'hub unreachable; serving the last good config');
      }
      this.connected = false;
      if (this.#stopped) return;
      attempt++;
      const replicas = this.#hub.replicas;
      if (replicas > 1) log.info({ from: hub, to: this.#hub.failover() }, 'trying the next hub replica');
      const round = Math.ceil(attempt / replicas);
      await new Promise((r) => setTimeout(r, backoffDelay(round, BACKOFF_BASE_MS, BACKOFF_MAX_MS, this.#rng)));
    }
  }

  /** One watch: resolves when the stream ends, rejects on error. */
  #watchOnce(onOpen: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = this.#hub.request('watch', 'GET', { accept: 'text/event-stream' });
      this.#watch = req;
      req.setTimeout(WATCH_IDLE_MS, () => req.destroy(new Error('watch idle')));
      req.on('error', reject);
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`watch answered ${res.statusCode}`));
        }
        this.connected = true;
        onOpen();
        log.info({ hub: this.#hub.hubUrl }, 'watching the management server');
        const parser = new SseParser();
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          for (const ev of parser.push(chunk))
            if (ev.event === 'snapshot') this.#enqueue(JSON.parse(ev.data) as Snapshot);
        });
        res.on('end', () => resolve());
        res.on('error', reject);
      });
      req.end();
    });
  }

  /** Snapshots apply one at a time, in arrival order. */
  #enqueue(snapshot: Snapshot): void {
    this.#applying = this.#applying.then(async () => {
      const errors = await this.#handlers
        .apply(snapshot)
        .catch((e: Error) => [{ path: '(apply)', message: e.message }]);
      const ack: Ack = { version: snapshot.version, hash: snapshot.hash, ok: !errors, ...(errors ? { errors } : {}) };
      await this.#hub.call('ack', JSON.stringify(ack)).catch((e: Error) => log.debug({ err: e.message }, 'ack failed'));
    });
  }
}
