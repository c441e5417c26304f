import type { Rng } from '../common/clock.js';
import { logger, writeLine } from './logger.js';
import type { ExchangeRecord } from './exchange-record.js';
import { firstHeader, type DownstreamRequest } from '../listener/downstream.js';

/**
 * One JSON line per downstream request, whoever answered it (upstream, direct response, redirect,
 * a gateway error or refusal; an upgrade when its tunnel closes), sampled or off by
 * `gateway.accessLog`. Requests answered before a route was chosen have no `route`.
 *
 * The line is the one pino would write for `logger.child({ type: 'access' }).info(fields)` (level, time,
 * pid, type, then the fields; undefined ones left out), built here by hand: it is written for every
 * request, and pino's general serializer, its per-line timestamp and reading `req.headers` (which Node
 * builds on first read) cost a third of a fully featured request's CPU. It goes out through the
 * logger's own stdout (LineSink), so its lines never interleave with the logger's.
 */
export class AccessLog {
  #enabled = true;
  #rate = 1;
  #rng: Rng = { random: Math.random };
  /** Query parameters that carry credentials (JWT token sources): their values are not logged. */
  #secretParams: ReadonlySet<string> | undefined;

  configure(cfg: { enabled: boolean; sampleRate: number }, rng: Rng, secretParams: readonly string[] = []): void {
    // Access lines are info lines: a logger set above info (MERIDIAN_LOG_LEVEL=warn) writes none.
    this.#enabled = cfg.enabled && cfg.sampleRate > 0 && logger.isLevelEnabled('info');
    this.#rate = cfg.sampleRate;
    this.#rng = rng;
    this.#secretParams = secretParams.length ? new Set(secretParams) : undefined;
  }

  /** `elapsedMs`: since the exchange began, as the route's latency histogram got it (one clock read). */
  write(p: ExchangeRecord, status: number, elapsedMs: number): void {
    if (!this.#enabled || (this.#rate < 1 && this.#rng.random() >= this.#rate)) return;
    const req = p.req;
    const url = req.url ?? '';
    let line = lineHead() + json(p.requestId);
    if (req.method !== undefined) line += `,"method":${json(req.method)}`;
    const authority = authorityOf(req);
    if (authority !== undefined) line += `,"authority":${json(authority)}`;
    line += `,"path":${json(this.#secretParams ? redactQuery(url, this.#secretParams) : url)},"status":${status}`;
    const bytesIn = req.socket?.bytesRead;
    if (bytesIn !== undefined) line += `,"bytesIn":${bytesIn}`;
    line += `,"bytesOut":${p.bytesOut},"durationMs":${Math.round(elapsedMs * 1000) / 1000}`;
    if (p.host) line += `,"upstream":${p.host.logName}`;
    if (p.route.name) line += `,"route":${p.route.logName}`;
    if (p.cluster) line += `,"cluster":${p.cluster.logName}`;
    line += `,"retries":${p.retries}`;
    if (p.error !== undefined) line += `,"error":${json(p.error)}`;
    writeLine(`${line}}\n`);
  }
}

/** Strings that need no escaping in JSON (printable ASCII without `"` and `\`): quoted as they are. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function json(s: string): string {
  return PLAIN.test(s) ? `"${s}"` : JSON.stringify(s);
}

/** The request's authority without building `req.headers`: HTTP/2's :authority, else the first Host line. */
function authorityOf(req: DownstreamRequest): string | undefined {
  if (req.httpVersionMajor === 2) return req.headers[':authority'] as string | undefined;
  return firstHeader(req.rawHeaders, 'host');
}

let lastMs = 0;
let lastHead = '';

/** The line up to the request id's value: level, time, pid, type. Made once per millisecond (lines of one millisecond share it). */
function lineHead(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastHead = `{"level":30,"time":"${new Date(now).toISOString()}","pid":${process.pid},"type":"access","requestId":`;
  }
  return lastHead;
}

/** The request target with the values of `names` query parameters replaced by "REDACTED". */
export function redactQuery(url: string, names: ReadonlySet<string>): string {
  const q = url.indexOf('?');
  if (q === -1) return url;
  const params = url
    .slice(q + 1)
    .split('&')
    .map((kv) => {
      const eq = kv.indexOf('=');
      return eq !== -1 && names.has(decodeName(kv.slice(0, eq))) ? `${kv.slice(0, eq)}=REDACTED` : kv;
    });
  return `${url.slice(0, q)}?${params.join('&')}`;
}

function decodeName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    return name;
  }
}
