import type { Logger } from 'pino';
import type { Rng } from '../common/clock.js';
import { logger } from './logger.js';
import type { ProxyRequest } from '../proxy/forwarder.js';

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

  configure(cfg: { enabled: boolean; sampleRate: number }, rng: Rng): void {
    this.#enabled = cfg.enabled && cfg.sampleRate > 0;
    this.#rate = cfg.sampleRate;
    this.#rng = rng;
  }

  write(p: ProxyRequest, status: number): void {
    if (!this.#enabled || (this.#rate < 1 && this.#rng.random() >= this.#rate)) return;
    const req = p.req;
    this.#log.info({
      requestId: p.requestId,
      method: req.method,
      authority: req.headers[':authority'] ?? req.headers.host,
      path: req.url,
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
