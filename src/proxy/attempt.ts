import type { Dispatcher } from 'undici';
import type { Duplex } from 'node:stream';
import type { UpstreamHost } from '../cluster/cluster-manager.js';
import type { CircuitBreaker } from '../pool/circuit-breaker.js';
import type { ClientSpan } from '../observability/tracing.js';

const CANCELLED = new Error('meridian: attempt cancelled');

/** What an attempt reports to the request that owns it. */
export interface AttemptOwner {
  attemptHeaders(a: Attempt, status: number, raw: Buffer[], resume: () => void, statusText: string): boolean;
  attemptData(a: Attempt, chunk: Buffer): boolean;
  attemptComplete(a: Attempt, trailers: Buffer[] | string[] | null): void;
  attemptError(a: Attempt, err: Error): void;
  /** An upgrade request's upstream answered 101: the socket is now the owner's. */
  attemptUpgrade(a: Attempt, status: number, raw: Buffer[] | string[] | null, socket: Duplex): void;
}

/**
 * One upstream try of a request, on one host: the undici dispatch handler (legacy raw-header API,
 * which undici's core calls natively, so no wrapper objects). Retries and hedges are more attempts.
 */
export class Attempt implements Dispatcher.DispatchHandler {
  readonly owner: AttemptOwner;
  readonly host: UpstreamHost;
  readonly startedAt = performance.now();
  abort: ((err?: Error) => void) | undefined;
  /** Set once the owner stops listening; late callbacks are ignored. `retry` = cancelled to retry on status. */
  cancelled: false | 'retry' | 'lost' | 'gone' = false;
  status = 0;
  #finished = false;
  #pending = true;
  readonly #breaker: CircuitBreaker;
  /** This attempt is a retry and holds one of the cluster's retry slots. */
  readonly isRetry: boolean;
  /** This attempt's CLIENT span, when its request is traced. */
  span: ClientSpan | undefined = undefined;

  /** Call only after `breaker.tryPending()` succeeded (and `tryRetry()` for a retry). */
  constructor(owner: AttemptOwner, host: UpstreamHost, breaker: CircuitBreaker, isRetry: boolean) {
    this.owner = owner;
    this.host = host;
    this.#breaker = breaker;
    this.isRetry = isRetry;
    host.activeRequests++;
    host.stats.requests++;
  }

  /** Stop this attempt: abort the upstream request (or arrange for it to abort on connect). */
  cancel(why: 'retry' | 'lost' | 'gone'): void {
    if (this.cancelled) return;
    this.cancelled = why;
    this.abort?.(CANCELLED);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    this.#leavePending();
    if (this.cancelled) abort(CANCELLED);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    this.status = statusCode;
    if (this.cancelled) {
      // Returning false alone would pause the upstream connection forever: abort it instead.
      this.abort?.(CANCELLED);
      return false;
    }
    return this.owner.attemptHeaders(this, statusCode, rawHeaders, resume, statusText);
  }

  onData(chunk: Buffer): boolean {
    return this.cancelled ? true : this.owner.attemptData(this, chunk);
  }

  onComplete(trailers: Buffer[] | string[] | null): void {
    this.#release();
    if (!this.cancelled) this.owner.attemptComplete(this, trailers);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, socket: Duplex): void {
    this.status = statusCode;
    this.#release();
    if (this.cancelled) socket.destroy();
    else this.owner.attemptUpgrade(this, statusCode, rawHeaders, socket);
  }

  onError(err: Error): void {
    this.#release(err);
    this.owner.attemptError(this, err);
  }

  /** Pending = dispatched but not yet on a connection (Envoy's pending request). */
  #leavePending() {
    if (!this.#pending) return;
    this.#pending = false;
    this.#breaker.releasePending();
  }

  #release(err?: Error) {
    if (this.#finished) return;
    this.#finished = true;
    if (this.span !== undefined) this.span.end(this.status, err && errorTypeOf(this, err));
    this.#leavePending();
    if (this.isRetry) this.#breaker.releaseRetry();
    if (this.host.activeRequests > 0) this.host.activeRequests--;
  }
}

/** error.type of a failed attempt's span: the status when one came, else the cancellation or the error's code. */
function errorTypeOf(a: Attempt, err: Error): string {
  if (a.status >= 400) return String(a.status);
  if (a.cancelled) return `cancelled_${a.cancelled}`;
  return (err as { code?: string }).code ?? err.name;
}
