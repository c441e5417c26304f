import type { Dispatcher } from 'undici';
import type { Readable } from 'node:stream';
import type { Rng } from '../common/clock.js';
import type { ErrorCode } from '../common/errors.js';
import type { ClusterRuntime, UpstreamHost } from '../cluster/cluster-manager.js';
import { buildResponseHeaders, flatToObject } from './headers.js';
import { classifyUpstreamError } from './error-map.js';
import { respondError, type DownstreamResponse } from './respond.js';
import { retriableStatus, type RouteRuntime } from './route-runtime.js';
import type { DownstreamRequest } from './request-scan.js';
import { backoffDelay } from '../common/backoff.js';

/** Upstream outcome classes reported for outlier detection. */
export type UpstreamOutcome = 'success' | '5xx' | 'gateway-error' | 'local-failure';

/** Services the forwarder needs from its worker; one object per snapshot. */
export interface ProxyEnv {
  readonly rng: Rng;
  recordOutcome(host: UpstreamHost, outcome: UpstreamOutcome, status: number): void;
  onFinish(p: ProxyRequest): void;
}

const RETRY_SIGNAL = new Error('meridian: retrying on status');
const DOWNSTREAM_GONE = new Error('meridian: downstream closed');

/**
 * One proxied request: the undici dispatch handler (legacy raw-header API, which undici's core uses
 * natively, so no per-request wrapper objects), with retries on a different host and streaming with
 * backpressure in both directions.
 */
export class ProxyRequest implements Dispatcher.DispatchHandler {
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly route: RouteRuntime;
  readonly cluster: ClusterRuntime;
  readonly env: ProxyEnv;
  readonly startedAt = performance.now();
  readonly opts: Dispatcher.DispatchOptions;
  host: UpstreamHost | undefined;
  status = 0;
  bytesOut = 0;
  error: ErrorCode | undefined;
  requestId = '';
  attempt = 0;
  /** Response headers added by filters (rate-limit headers), flat. */
  extraResponseHeaders: string[] | undefined;
  #abort: ((err?: Error) => void) | undefined;
  #retrying = false;
  #done = false;
  #resume: (() => void) | undefined;
  #hashKey: string | undefined;

  constructor(req: DownstreamRequest, res: DownstreamResponse, route: RouteRuntime, cluster: ClusterRuntime, env: ProxyEnv, opts: Dispatcher.DispatchOptions, hashKey: string | undefined) {
    this.req = req;
    this.res = res;
    this.route = route;
    this.cluster = cluster;
    this.env = env;
    this.opts = opts;
    this.#hashKey = hashKey;
    res.once('close', this.#onDownstreamClose);
  }

  /** Pick a host (avoiding the previous one on retries) and dispatch. */
  send(): void {
    const previous = this.host;
    const host = this.cluster.lb.pick(previous ? { hashKey: this.#hashKey, accept: (h) => h !== previous } : this.#hashKey ? { hashKey: this.#hashKey } : undefined) as UpstreamHost | undefined;
    if (!host) return this.#fail('no_healthy_upstream');
    this.host = host;
    host.activeRequests++;
    host.stats.requests++;
    this.#retrying = false;
    host.pool.dispatch(this.opts, this);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    // The client may have gone before the upstream request even started.
    if (this.#done) abort(DOWNSTREAM_GONE);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (this.#done) {
      // Returning false alone would pause the upstream connection forever: abort it instead.
      this.#abort?.(DOWNSTREAM_GONE);
      return false;
    }
    const retry = this.route.retry;
    if (retry && this.#canRetry() && retriableStatus(retry, statusCode)) {
      this.#outcome(statusCode);
      this.#retrying = true;
      this.#abort?.(RETRY_SIGNAL);
      return false;
    }
    this.status = statusCode;
    this.#resume = resume;
    const headers = buildResponseHeaders(rawHeaders, this.route.responseOps, this.extraResponseHeaders, false);
    const res = this.res;
    if (this.req.httpVersionMajor === 2) (res as import('node:http2').Http2ServerResponse).writeHead(statusCode, flatToObject(headers));
    else (res as import('node:http').ServerResponse).writeHead(statusCode, statusText, headers);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.#done) return true;
    this.bytesOut += chunk.length;
    const ok = (this.res as import('node:http').ServerResponse).write(chunk);
    if (!ok) this.res.once('drain', this.#onDrain);
    return ok;
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    if (this.#done) return;
    this.#release();
    this.#outcome(this.status);
    if (trailers && trailers.length) this.res.addTrailers(flatToObject(trailers.map(String)));
    this.res.end();
    this.#finish();
  }

  onError(err: Error): void {
    if (this.#done) return;
    this.#release();
    if (this.#retrying) return this.#retryLater();
    const code = classifyUpstreamError(err);
    if (this.status === 0) this.#outcome(code === 'upstream_timeout' ? 504 : 0);
    if (this.status === 0 && this.#retryableError(code)) return this.#retryLater();
    this.#fail(code);
  }

  #onDrain = () => this.#resume?.();

  #onDownstreamClose = () => {
    if (this.#done) return;
    // The client went away first: stop the upstream work too.
    this.#done = true;
    this.#release();
    this.#abort?.(DOWNSTREAM_GONE);
    this.error ??= 'upstream_reset';
    this.env.onFinish(this);
  };

  #release() {
    const h = this.host;
    if (h && h.activeRequests > 0) h.activeRequests--;
  }

  #outcome(status: number) {
    const h = this.host;
    if (!h) return;
    if (status === 0) this.env.recordOutcome(h, 'local-failure', 0);
    else if (status === 502 || status === 503 || status === 504) this.env.recordOutcome(h, 'gateway-error', status);
    else if (status >= 500) this.env.recordOutcome(h, '5xx', status);
    else this.env.recordOutcome(h, 'success', status);
    if (status === 0 || status >= 500) h.stats.errors++;
  }

  #retryableError(code: ErrorCode): boolean {
    const p = this.route.retry;
    if (!p || !this.#canRetry()) return false;
    if (code === 'upstream_connect_failure') return p.onConnectFailure;
    if (code === 'upstream_reset' || code === 'upstream_protocol_error') return p.onReset && this.#bodyReplayable();
    if (code === 'upstream_timeout') return p.on5xx || p.onGatewayError;
    return false;
  }

  #canRetry(): boolean {
    const p = this.route.retry!;
    return this.attempt < p.attempts && !this.res.headersSent && this.#bodyReplayable();
  }

  /** A streamed body can be re-sent only if no byte of it has been read yet. */
  #bodyReplayable(): boolean {
    return this.opts.body == null || (this.opts.body as Readable).readableDidRead === false;
  }

  #retryLater() {
    const p = this.route.retry!;
    this.attempt++;
    const delay = backoffDelay(this.attempt, p.baseMs, p.maxMs, this.env.rng);
    setTimeout(this.#resend, delay);
  }

  #resend = () => {
    if (!this.#done) this.send();
  };

  #fail(code: ErrorCode) {
    this.error = code;
    this.status = this.res.headersSent ? this.status : 0;
    respondError(this.res, code);
    if (!this.status) this.status = this.res.statusCode;
    this.#finish();
  }

  #finish() {
    if (this.#done) return;
    this.#done = true;
    this.env.onFinish(this);
  }
}
