import type { Logger } from 'pino';
import type { Rng } from '../common/clock.js';
import { logger } from './logger.js';
import type { ExchangeRecord } from './exchange-record.js';

/**
 * One JSON line per downstream request, whoever answered it (upstream, direct response, redirect,
 * a gateway error or refusal; an upgrade when its tunnel closes), sampled or off by
 * `gateway.accessLog`. Requests answered before a route was chosen have no `route`.
 */
export class AccessLog {
  #log: Logger = logger.child({ type: 'access' });
  #enabled = true;
  #rate = 1;
  #rng: Rng = { random: Math.random };
  /** Query parameters that carry credentials (JWT token sources): their values are not logged. */
  #secretParams: ReadonlySet<string> | undefined;

  configure(cfg: { enabled: boolean; sampleRate: number }, rng: Rng, secretParams: readonly string[] = []): void {
    this.#enabled = cfg.enabled && cfg.sampleRate > 0;
    this.#rate = cfg.sampleRate;
    this.#rng = rng;
    this.#secretParams = secretParams.length ? new Set(secretParams) : undefined;
  }

  write(p: ExchangeRecord, status: number): void {
    if (!this.#enabled || (this.#rate < 1 && this.#rng.random() >= this.#rate)) return;
    const req = p.req;
    this.#log.info({
      requestId: p.requestId,
      method: req.method,
      authority: req.headers[':authority'] ?? req.headers.host,
      path: this.#secretParams ? redactQuery(req.url ?? '', this.#secretParams) : req.url,
      status,
      bytesIn: req.socket?.bytesRead,
      bytesOut: p.bytesOut,
      durationMs: Math.round((performance.now() - p.startedAt) * 1000) / 1000,
      upstream: p.host?.address,
      route: p.route.name || undefined,
      cluster: p.cluster?.name,
      retries: p.retries,
      error: p.error,
    });
  }
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
