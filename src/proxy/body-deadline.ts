import type { Http2ServerRequest } from 'node:http2';
import type { DownstreamRequest } from '../listener/downstream.js';

/** A snapshot's body-progress rule: `limits.bodyTimeout` (ms) and `limits.bodyMinRate` (bytes/s). */
export interface BodyProgressRule {
  readonly timeoutMs: number;
  readonly minRate: number;
}

/**
 * A request body must keep arriving, or the request ends with 408 (Apache's mod_reqtimeout body rule,
 * which nginx's client_body_timeout approximates with an idle gap): from the moment the body starts
 * being forwarded it has `timeoutMs`, extended by 1 s for every `minRate` bytes received. So a stalled
 * body fails after timeoutMs, and so does one trickled a byte at a time; a steady upload of any size
 * at `minRate` or faster never does. With `minRate` 0 the deadline is fixed.
 *
 *   timeoutMs 15000, minRate 500: 0 bytes -> closed at 15 s; 2,500 bytes by then -> deadline 20 s;
 *   a 10 MiB body at 1 MB/s -> the deadline moves ~2 s ahead per second received: never reached.
 *
 * Bytes are counted on the connection (HTTP/2: the whole session's, so a trickled stream beside a
 * busy one on the same connection is caught only by `requestTimeout`/`idleTimeout`).
 */
export class BodyDeadline {
  readonly #req: DownstreamRequest;
  readonly #rule: BodyProgressRule;
  readonly #onExpired: () => void;
  readonly #startedAt = performance.now();
  readonly #bytesAtStart: number;
  #timer: NodeJS.Timeout;

  constructor(req: DownstreamRequest, rule: BodyProgressRule, onExpired: () => void) {
    this.#req = req;
    this.#rule = rule;
    this.#onExpired = onExpired;
    this.#bytesAtStart = bytesIn(req);
    this.#timer = setTimeout(BodyDeadline.#check, rule.timeoutMs, this);
    this.#timer.unref();
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  static #check(d: BodyDeadline): void {
    if (d.#req.complete || d.#req.destroyed) return;
    const received = bytesIn(d.#req) - d.#bytesAtStart;
    const deadline = d.#startedAt + d.#rule.timeoutMs + (d.#rule.minRate > 0 ? (received / d.#rule.minRate) * 1000 : 0);
    const left = deadline - performance.now();
    if (left <= 0) return d.#onExpired();
    d.#timer = setTimeout(BodyDeadline.#check, left, d);
    d.#timer.unref();
  }
}

function bytesIn(req: DownstreamRequest): number {
  if (req.httpVersionMajor === 2) return (req as Http2ServerRequest).stream.session?.socket?.bytesRead ?? 0;
  return req.socket?.bytesRead ?? 0;
}
