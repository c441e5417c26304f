import { randomUuid } from '../common/random-hex.js';
import type { Dispatcher } from 'undici';
import type { Duplex, Readable } from 'node:stream';
import type { Http2ServerResponse } from 'node:http2';
import type { Rng } from '../common/clock.js';
import type { ErrorCode } from '../common/errors.js';
import type { ClusterRuntime, UpstreamHost } from '../cluster/cluster-manager.js';
import { buildResponseHeaders, flatToObject, trailersToObject } from './headers.js';
import { classifyUpstreamError, closedBeforeResponse } from './error-map.js';
import { abandonUnreadBody, respondError } from './respond.js';
import { UNROUTED, type RouteRuntime } from './route-runtime.js';
import { retriableError, retriableResponse } from './retry-policy.js';
import { HedgeRace } from './hedge.js';
import { closeTunnel, openTunnel, switchingProtocolsHead } from './tunnel.js';
import { grpcCodeToHttp, grpcStatusIn, grpcToHttpStatus } from './grpc-status.js';
import { backoffDelay } from '../common/backoff.js';
import { Attempt, type AttemptOwner } from './attempt.js';
import { bodyReplayable, bodyUnread, rewoundBody } from './body-replay.js';
import { BodyDeadline, type BodyProgressRule } from './body-deadline.js';
import { BodyTooLargeError } from './body-limit.js';
import type { ExchangeError, ExchangeRecord } from '../observability/exchange-record.js';
import type { RequestTrace } from '../observability/tracing.js';
import type { DownstreamRequest, DownstreamResponse } from '../listener/downstream.js';
import { Outcome, outcomeOf } from '../outlier/outcome.js';

/** Services the forwarder needs from its worker. */
export interface ProxyEnv {
  readonly rng: Rng;
  /**
   * Requests between their ProxyRequest's creation and env.onFinish (which decrements it): every
   * downstream request, an upgrade until its tunnel closes. maxInFlightRequests and drain read it.
   */
  inFlight: number;
  recordOutcome(host: UpstreamHost, outcome: Outcome, status: number): void;
  /** Called exactly once per ProxyRequest: count it, write its access-log line, release inFlight. */
  onFinish(p: ExchangeRecord): void;
}

/** A gateway error to answer a request with ({@link ProxyRequest.answer}). */
export interface LocalAnswer {
  /** Counted under it; `route=""` without one (refused before routing). */
  route?: RouteRuntime;
  /** The client's x-request-id, or '' for a new one. */
  requestId: string;
  code: ErrorCode;
  headers?: Record<string, string>;
  body?: string;
  /** Close the connection after answering (the request's framing is in doubt). */
  close?: boolean;
}

const OVERLOADED = { 'x-meridian-overloaded': 'true' };
/** Dispatch options of a request answered locally: never dispatched. */
const NO_UPSTREAM: Dispatcher.DispatchOptions = Object.freeze({ path: '/', method: 'GET' as const });

/**
 * Stage the head of a gRPC Trailers-Only response (grpc-status in the headers, which gRPC allows
 * only there) instead of sending it: it must go out as one HEADERS frame with END_STREAM, or clients
 * read the status as metadata and fail the call as INTERNAL "ended without gRPC status". res.end()
 * then sends it with END_STREAM (a body chunk, which such a response never has, would send it first).
 */
function stageTrailersOnlyHead(
  res: Http2ServerResponse,
  status: number,
  headers: Record<string, string | string[]>,
): void {
  res.statusCode = status;
  for (const name in headers) res.setHeader(name, headers[name]);
}

/** Methods a request of which may be sent twice without a different effect (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Error listener of sockets whose errors only mean "close it". */
export function destroySelf(this: Duplex): void {
  this.destroy();
}

/**
 * One downstream request: picks hosts, runs attempts (retries on a different host, hedges after a
 * delay), commits the first usable response to the client and streams it with backpressure. An
 * upgrade is one too: on 101 the two sockets are piped together and it finishes when either closes.
 * A request the gateway answers itself (an error, a filter's refusal, a direct response or redirect)
 * is one without a cluster ({@link ProxyRequest.answer}, {@link ProxyRequest.answered}), so every
 * response finishes through the same counters, access log and in-flight count (env.onFinish).
 */
export class ProxyRequest implements AttemptOwner, ExchangeRecord {
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly route: RouteRuntime;
  /** The cluster chosen for the request; undefined when it was answered locally. */
  readonly cluster: ClusterRuntime | undefined;
  readonly env: ProxyEnv;
  readonly startedAt = performance.now();
  readonly opts: Dispatcher.DispatchOptions;
  /** The attempt whose response goes to the client (or the last one tried). */
  current: Attempt | undefined;
  status = 0;
  bytesOut = 0;
  error: ExchangeError | undefined;
  requestId = '';
  /** Retries made so far (hedges are not counted). */
  retries = 0;
  /** Response headers added by filters (rate-limit headers), flat. */
  extraResponseHeaders: string[] | undefined;
  /** Its spans when the request is traced and sampled (set by the forward action before start()). */
  trace: RequestTrace | undefined = undefined;
  #committed: Attempt | undefined;
  /** The request was already sent again after the keep-alive race (once per request). */
  #resentFresh = false;
  /** The committed response's grpc-status mapped to HTTP (headers or trailers), once seen. */
  #grpcHttpStatus: number | undefined;
  #inFlight = 0;
  /** Hedging (routes with `hedge` only): its timer and the two racing attempts. */
  #race: HedgeRace<Attempt> | undefined;
  #done = false;
  #resume: (() => void) | undefined;
  /** The request's consistent-hash key (ring hash, Maglev), set before start(). */
  hashKey: string | undefined;
  /** Hosts of earlier attempts; allocated only when a request makes a second attempt. */
  #tried: UpstreamHost[] | undefined;
  #holdsRequest = false;
  /** Bound once by start(): the downstream's (and a tunnel's upstream's) 'close' listener. */
  #onClose: (() => void) | undefined;
  /** The upstream socket of an upgraded connection. */
  #tunnel: Duplex | undefined;
  /** Watches a streamed request body's progress (limits.bodyTimeout) until the request finishes. */
  #bodyDeadline: BodyDeadline | undefined;

  /** In flight from here until env.onFinish: the caller must either start() it or answer it. */
  constructor(
    req: DownstreamRequest,
    res: DownstreamResponse,
    route: RouteRuntime,
    cluster: ClusterRuntime | undefined,
    env: ProxyEnv,
    opts: Dispatcher.DispatchOptions,
  ) {
    this.req = req;
    this.res = res;
    this.route = route;
    this.cluster = cluster;
    this.env = env;
    this.opts = opts;
    env.inFlight++;
  }

  /**
   * Answer a request with a gateway error (a filter's refusal, a request refused before or after
   * routing) and finish it: counted under its route (`route=""` without one) and access-logged,
   * with a new request id when the client sent none (as Envoy generates one for every request).
   */
  static answer(req: DownstreamRequest, res: DownstreamResponse, env: ProxyEnv, a: LocalAnswer): void {
    const p = new ProxyRequest(req, res, a.route ?? UNROUTED, undefined, env, NO_UPSTREAM);
    p.requestId = a.requestId || randomUuid();
    p.#fail(a.code, a.headers ?? (a.code === 'overloaded' ? OVERLOADED : undefined), a.body, a.close ?? false);
  }

  /** Finish a request whose response the gateway wrote itself (direct response, redirect). */
  static answered(
    req: DownstreamRequest,
    res: DownstreamResponse,
    route: RouteRuntime,
    env: ProxyEnv,
    requestId: string,
    bytesOut: number,
  ): void {
    const p = new ProxyRequest(req, res, route, undefined, env, NO_UPSTREAM);
    p.requestId = requestId || randomUuid();
    p.status = res.statusCode;
    p.bytesOut = bytesOut;
    p.#finish();
  }

  get host(): UpstreamHost | undefined {
    return this.current?.host;
  }

  /** Only proxied requests start attempts, and those always have a cluster. */
  get #cluster(): ClusterRuntime {
    return this.cluster!;
  }

  /** Start the request: take a slot of the cluster's circuit breaker, then the first attempt. */
  start(): void {
    // `on`, not `once`: a response closes once, and once() would allocate a wrapper per request.
    this.res.on('close', (this.#onClose = this.#onDownstreamClose.bind(this)));
    if (!this.#cluster.breaker.tryRequest()) return this.#fail('overloaded', OVERLOADED);
    this.#holdsRequest = true;
    this.send(false);
  }

  /** Hold the request body to the snapshot's progress rule: a stalled or trickled body ends in 408. */
  watchBody(rule: BodyProgressRule): void {
    if (this.#done) return;
    this.#bodyDeadline = new BodyDeadline(this.req, rule, () => this.#clientFault('request_timeout'));
  }

  /** End a request for the client's own fault (its body): stop every attempt and answer `code`. */
  #clientFault(code: 'request_timeout' | 'payload_too_large'): void {
    if (this.#done) return;
    this.#race?.abandon();
    this.current?.cancel('gone');
    // The rest of the client's body will not be read: the connection cannot be reused.
    this.#fail(code, undefined, undefined, true);
  }

  /**
   * Start an attempt on a host no earlier attempt used, when one exists (Envoy's previous_hosts
   * retry predicate; the load balancer then also moves on to the next priority, like
   * previous_priorities, when every host of the chosen one was tried).
   */
  send(isRetry: boolean): void {
    const previous = this.current?.host;
    if (previous) (this.#tried ??= []).push(previous);
    const tried = this.#tried;
    const key = this.hashKey;
    const host = this.#cluster.lb.pick(
      tried
        ? { hashKey: key, accept: (h) => !tried.includes(h as UpstreamHost) }
        : key !== undefined
          ? { hashKey: key }
          : undefined,
    ) as UpstreamHost | undefined;
    if (!host) {
      if (isRetry) this.#cluster.breaker.releaseRetry();
      return this.#fail('no_healthy_upstream');
    }
    if (!this.#cluster.breaker.tryPending()) {
      if (isRetry) this.#cluster.breaker.releaseRetry();
      return this.#fail('overloaded', OVERLOADED);
    }
    if (isRetry) this.opts.body = rewoundBody(this.opts.body as Readable);
    const a = new Attempt(this, host, this.#cluster.breaker, isRetry);
    this.current = a;
    this.#inFlight++;
    host.pool.dispatch(this.trace === undefined ? this.opts : this.#tracedOpts(a), a);
    if (this.route.hedgeDelayMs > 0 && this.opts.body == null && !this.opts.upgrade) {
      const race = (this.#race ??= new HedgeRace());
      if (!race.racing) race.arm(this.route.hedgeDelayMs, () => ProxyRequest.#sendHedge(this));
    }
  }

  static #sendHedge(p: ProxyRequest): void {
    if (p.#done || p.#committed || p.#inFlight !== 1) return;
    const first = p.current!;
    p.send(false);
    if (p.current !== first) p.#race!.started(first, p.current!);
  }

  attemptHeaders(
    a: Attempt,
    statusCode: number,
    rawHeaders: Buffer[],
    resume: () => void,
    statusText: string,
  ): boolean {
    if (this.#done || this.#committed) {
      a.cancel('lost');
      return false;
    }
    const retry = this.route.retry;
    // The retry slot is taken before the response is dropped: with no budget left, the client gets it.
    if (
      retry &&
      this.#inFlight === 1 &&
      this.#canRetry() &&
      retriableResponse(retry, statusCode, rawHeaders) &&
      this.#cluster.breaker.tryRetry()
    ) {
      const grpcStatus = grpcStatusIn(rawHeaders);
      this.#outcome(a, statusCode, grpcStatus < 0 ? statusCode : grpcCodeToHttp(grpcStatus));
      a.cancel('retry');
      return false;
    }
    this.#commit(a);
    this.status = statusCode;
    this.#resume = resume;
    const headers = buildResponseHeaders(rawHeaders, this.route.responseOps, this.extraResponseHeaders, false);
    if (this.req.httpVersionMajor === 2) {
      const h = flatToObject(headers);
      // gRPC needs HTTP/2: only an HTTP/2 client's response can carry a gRPC status worth reading.
      const grpcStatus = h['grpc-status'];
      if (grpcStatus === undefined) (this.res as Http2ServerResponse).writeHead(statusCode, h);
      else {
        this.#grpcHttpStatus = grpcToHttpStatus(grpcStatus);
        stageTrailersOnlyHead(this.res as Http2ServerResponse, statusCode, h);
      }
    } else (this.res as import('node:http').ServerResponse).writeHead(statusCode, statusText, headers);
    return true;
  }

  /** The first attempt to answer wins; the other racing attempt (if hedged) is cancelled. */
  #commit(a: Attempt) {
    this.#committed = a;
    this.current = a;
    this.#race?.settle(a);
  }

  attemptData(_a: Attempt, chunk: Buffer): boolean {
    if (this.#done) return true;
    this.bytesOut += chunk.length;
    const ok = (this.res as import('node:http').ServerResponse).write(chunk);
    // undici's resume is bound to its connection: it is the drain listener itself.
    if (!ok) this.res.once('drain', this.#resume!);
    return ok;
  }

  /**
   * The upstream switched protocols: answer the client's upgrade with its 101 and pipe the two
   * sockets together. The exchange stays in flight (and unlogged) until either side closes.
   */
  attemptUpgrade(a: Attempt, statusCode: number, rawHeaders: Buffer[] | string[] | null, upstream: Duplex): void {
    upstream.on('error', destroySelf);
    if (this.#done || this.#committed) {
      upstream.destroy();
      return;
    }
    this.#commit(a);
    this.#outcome(a, statusCode);
    // The request/response exchange is over: a long-lived tunnel holds no circuit-breaker request slot.
    this.#releaseRequest();
    this.status = statusCode;
    const client = this.req.socket as Duplex & { bytesWritten: number };
    const headers = buildResponseHeaders(rawHeaders ?? [], this.route.responseOps, this.extraResponseHeaders, true);
    this.bytesOut = -client.bytesWritten; // + bytesWritten at the end: what this tunnel sent the client
    this.#tunnel = upstream;
    openTunnel(client, upstream, switchingProtocolsHead(statusCode, headers), this.#onClose!);
  }

  attemptComplete(a: Attempt, trailers: Buffer[] | string[] | null): void {
    this.#inFlight--;
    if (this.#done || a !== this.#committed) return;
    const t = trailersToObject(trailers);
    if (t) {
      const grpcStatus = t['grpc-status'];
      if (grpcStatus !== undefined) this.#grpcHttpStatus = grpcToHttpStatus(grpcStatus);
      this.res.addTrailers(t);
    }
    this.#outcome(a, this.status, this.#grpcHttpStatus);
    this.res.end();
    this.#finish(t !== undefined);
  }

  attemptError(a: Attempt, err: Error): void {
    this.#inFlight--;
    if (this.#done) return;
    // The client's body outgrew maxBodyBytes: the client's fault, not the upstream's (no outcome).
    if (err instanceof BodyTooLargeError) return this.#clientFault('payload_too_large');
    if (a.cancelled === 'retry') return this.#retryLater('upstream_reset', true);
    if (a.cancelled) return;
    // The response already started: the client's stream must be cut, not completed.
    if (a === this.#committed) return this.#fail('upstream_reset');
    if (this.#committed) return;
    if (this.#inFlight === 0 && this.#resendable(a, err)) return this.#resendFresh(a);
    const code = classifyUpstreamError(err);
    this.#outcome(a, code === 'upstream_timeout' ? 504 : 0);
    // The other racing attempt (a hedge) may still answer.
    if (this.#inFlight > 0) return;
    if (this.#retryableError(code)) return this.#retryLater(code);
    this.#fail(code);
  }

  #onDownstreamClose(): void {
    const tunnel = this.#tunnel;
    if (tunnel) {
      // Either side of an upgraded connection closed: close the other; the exchange ends here.
      const client = this.req.socket as Duplex & { bytesWritten: number };
      closeTunnel(client, tunnel);
      if (this.#done) return;
      this.bytesOut += client.bytesWritten;
      return this.#finish();
    }
    if (this.#done) return;
    // The client went away first: stop the upstream work too.
    this.#done = true;
    this.#bodyDeadline?.stop();
    this.#race?.abandon();
    this.current?.cancel('gone');
    this.error ??= 'downstream_disconnect';
    this.#releaseRequest();
    this.env.onFinish(this);
  }

  /**
   * May a request that died in the keep-alive race (see closedBeforeResponse) be sent again? Once per
   * request, before any response byte, and only when the upstream cannot have acted on it: an
   * idempotent method (RFC 9110 §9.2.2), or a body the upstream never got a byte of; the body must
   * be available again. This is nginx's, Go's Transport's and Envoy's rule; it needs no retry policy
   * and spends no retry budget, and it is not an upstream failure (no outlier outcome).
   */
  #resendable(a: Attempt, err: Error): boolean {
    if (
      this.#resentFresh ||
      a.status !== 0 ||
      a.cancelled ||
      !closedBeforeResponse(err) ||
      !bodyReplayable(this.opts.body as Readable)
    )
      return false;
    return IDEMPOTENT.has(this.opts.method) || bodyUnread(this.opts.body as Readable);
  }

  /** Send the request again to the same host, on a connection of its own. */
  #resendFresh(a: Attempt): void {
    this.#resentFresh = true;
    if (!this.#cluster.breaker.tryPending()) return this.#fail('overloaded', OVERLOADED);
    this.opts.body = rewoundBody(this.opts.body as Readable);
    const b = new Attempt(this, a.host, this.#cluster.breaker, false);
    this.current = b;
    this.#inFlight++;
    a.host.pool.dispatchFresh(this.trace === undefined ? this.opts : this.#tracedOpts(b), b);
  }

  /** Attempt `a`'s CLIENT span started and its traceparent in the options; a second one in flight is a hedge. */
  #tracedOpts(a: Attempt): Dispatcher.DispatchOptions {
    return this.trace!.attempt(a, this.opts, this.retries, this.#inFlight > 1);
  }

  /**
   * Count an attempt's result for its host: metrics by the HTTP status; outlier detection and the
   * host's error count by `verdict`, which for a gRPC response is its grpc-status mapped to HTTP
   * (Envoy's rule: a failed call answers HTTP 200 with UNAVAILABLE in its trailers).
   */
  #outcome(a: Attempt, status: number, verdict = status) {
    const h = a.host;
    h.metrics.byClass[(status / 100) | 0]?.inc();
    h.metrics.latency.observe((performance.now() - a.startedAt) / 1000);
    const outcome = outcomeOf(verdict);
    this.env.recordOutcome(h, outcome, verdict);
    if (outcome !== Outcome.SUCCESS) h.stats.errors++;
  }

  #retryableError(code: ErrorCode): boolean {
    const p = this.route.retry;
    return p !== undefined && this.#canRetry() && retriableError(p, code);
  }

  /** What only this request knows: attempts left, nothing sent to the client yet, and a body that can go again. */
  #canRetry(): boolean {
    return (
      this.retries < this.route.retry!.attempts && !this.res.headersSent && bodyReplayable(this.opts.body as Readable)
    );
  }

  /** Schedule a retry if the cluster's retry budget allows (or the slot is already held); else answer `code`. */
  #retryLater(code: ErrorCode, slotHeld = false) {
    const p = this.route.retry!;
    if (!slotHeld && !this.#cluster.breaker.tryRetry()) return this.#fail(code);
    this.retries++;
    setTimeout(ProxyRequest.#resend, backoffDelay(this.retries, p.baseMs, p.maxMs, this.env.rng), this);
  }

  static #resend(p: ProxyRequest): void {
    if (p.#done) p.#cluster.breaker.releaseRetry();
    else p.send(true);
  }

  #fail(code: ErrorCode, extra?: Record<string, string>, body?: string, closeConnection = false) {
    this.error = code;
    this.#race?.disarm();
    respondError(this.res, code, extra, closeConnection, body);
    this.status = this.res.statusCode;
    this.#finish();
  }

  #finish(trailersPending = false) {
    if (this.#done) return;
    this.#done = true;
    this.#bodyDeadline?.stop();
    this.#releaseRequest();
    abandonUnreadBody(this.req, trailersPending);
    this.env.onFinish(this);
  }

  #releaseRequest() {
    if (!this.#holdsRequest) return;
    this.#holdsRequest = false;
    this.#cluster.breaker.releaseRequest();
  }
}
