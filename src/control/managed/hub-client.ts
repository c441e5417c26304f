import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { backoffDelay } from '../../common/backoff.js';
import type { Rng } from '../../common/clock.js';
import { logger } from '../../observability/logger.js';
import { REPLICA_HEADER, type Ack, type GatewayReport, type Snapshot } from '../../hub/protocol.js';
import { SseParser } from './sse.js';

const log = logger.child({ component: 'hub-client' });
/** The hub pings every 15 s; a silent watch for this long is dead even if TCP has not noticed. */
const WATCH_IDLE_MS = 45000;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 10000;

export interface HubClientOptions {
  url: string;
  id: string;
  token?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  reportIntervalMs: number;
}

export interface HubClientHandlers {
  report(): GatewayReport;
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
  readonly #agent: http.Agent;
  readonly #request: typeof http.request;
  #stopped = false;
  readonly #replica = randomUUID();
  #watch?: http.ClientRequest;
  #reportTimer?: NodeJS.Timeout;
  #lastReport = '';
  #applying: Promise<unknown> = Promise.resolve();
  connected = false;

  constructor(opts: HubClientOptions, handlers: HubClientHandlers, rng: Rng) {
    this.#opts = opts;
    this.#handlers = handlers;
    this.#rng = rng;
    const secure = opts.url.startsWith('https:');
    this.#agent = secure ? new https.Agent({ keepAlive: true, ...opts.tls }) : new http.Agent({ keepAlive: true });
    this.#request = secure ? https.request : http.request;
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
    this.#agent.destroy();
  }

  /** Send the report if it changed (or `force`); failures are left to the watch loop to recover. */
  async reportNow(force = false): Promise<void> {
    try {
      await this.#report(force);
    } catch (e) {
      log.debug({ err: (e as Error).message }, 'report failed');
    }
  }

  async #report(force: boolean): Promise<void> {
    const report = JSON.stringify(this.#handlers.report());
    if (!force && report === this.#lastReport) return;
    await this.#post('report', report);
    this.#lastReport = report;
  }

  /** Report, then watch; on any failure back off (full jitter) and start again. */
  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#stopped) {
      try {
        await this.#report(true);
        await this.#watchOnce(() => {
          attempt = 0;
        });
      } catch (e) {
        if (this.connected || attempt === 0)
          log.warn({ hub: this.#opts.url, err: (e as Error).message }, 'hub unreachable; serving the last good config');
      }
      this.connected = false;
      if (this.#stopped) return;
      attempt++;
      await new Promise((r) => setTimeout(r, backoffDelay(attempt, BACKOFF_BASE_MS, BACKOFF_MAX_MS, this.#rng)));
    }
  }

  /** One watch: resolves when the stream ends, rejects on error. */
  #watchOnce(onOpen: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = this.#request(this.#url('watch'), {
        method: 'GET',
        agent: this.#agent,
        headers: { ...this.#identity(), accept: 'text/event-stream' },
      });
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
        log.info({ hub: this.#opts.url }, 'watching the management server');
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
      await this.#post('ack', JSON.stringify(ack)).catch((e: Error) => log.debug({ err: e.message }, 'ack failed'));
    });
  }

  #url(action: string): URL {
    return new URL(`/v1/gateways/${encodeURIComponent(this.#opts.id)}/${action}`, this.#opts.url);
  }

  /** Who is calling: the hub token if any, and this process's replica id (see REPLICA_HEADER). */
  #identity(): Record<string, string> {
    return this.#opts.token
      ? { authorization: `Bearer ${this.#opts.token}`, [REPLICA_HEADER]: this.#replica }
      : { [REPLICA_HEADER]: this.#replica };
  }

  #post(action: string, body: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = this.#request(this.#url(action), {
        method: 'POST',
        agent: this.#agent,
        headers: { ...this.#identity(), 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      req.setTimeout(5000, () => req.destroy(new Error('hub request timed out')));
      req.on('error', reject);
      req.on('response', (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`hub answered ${res.statusCode} to ${action}`)),
        );
      });
      req.end(body);
    });
  }
}
