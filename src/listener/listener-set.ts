import type net from 'node:net';
import type { Http2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Config, ListenerConfig } from '../config/schema/index.js';
import { formatAddress, splitAddress } from '../common/address.js';
import { createPlainServer, createTlsServer, type ServerHandlers } from './servers.js';
import { TlsContexts } from './tls-context.js';
import { activeConnections } from '../observability/request-metrics.js';
import { createPassthroughServer } from './passthrough-server.js';

interface Running {
  key: string;
  config: ListenerConfig;
  server: net.Server;
  sockets: Set<net.Socket>;
  sessions: Set<Http2Session>;
  contexts: TlsContexts | undefined;
}

/** Create the server of one listener; the handlers know which listener they serve. */
export type HandlerFactory = (listener: ListenerConfig) => ServerHandlers;

/**
 * The running listeners of a worker, reconciled against each snapshot: an unchanged listener keeps
 * its server and connections (its handlers read the current snapshot per request); a changed one is
 * replaced; a removed one stops accepting and drains.
 */
export class ListenerSet {
  readonly #running = new Map<string, Running>();

  async reconcile(config: Config, handlers: HandlerFactory): Promise<void> {
    const wanted = new Map(config.listeners.map((l) => [l.name, l]));
    for (const [name, r] of this.#running) {
      const next = wanted.get(name);
      if (!next || listenerKey(next, config) !== r.key) await this.#stop(name, r);
      else r.contexts?.setRevokedGateways(next.tls?.revokedGateways);
    }
    for (const [name, l] of wanted) {
      if (this.#running.has(name)) continue;
      await this.#start(l, config, handlers(l));
    }
  }

  async #start(l: ListenerConfig, config: Config, handlers: ServerHandlers) {
    const limits = config.gateway.limits;
    const contexts = l.protocol === 'https' ? new TlsContexts(l.name, l.tls!) : undefined;
    const server = contexts
      ? createTlsServer(limits, handlers, contexts)
      : l.protocol === 'tls-passthrough'
        ? createPassthroughServer(l.name, handlers.resolveSni)
        : createPlainServer(l, limits, handlers);
    const sockets = new Set<net.Socket>();
    const sessions = new Set<Http2Session>();
    const h2 = (server as net.Server & { h2?: net.Server }).h2 ?? server;
    h2.on('session', (session: Http2Session) => {
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
    });
    const active = activeConnections.labels(l.name);
    server.on('connection', (s: net.Socket) => {
      // limits.maxConnections is per worker, over all its listeners (server.maxConnections would be per listener).
      if (limits.maxConnections && this.connectionCount() >= limits.maxConnections) return void s.destroy();
      sockets.add(s);
      active.inc();
      s.once('close', () => {
        sockets.delete(s);
        active.dec();
      });
    });
    const { host, port } = splitAddress(l.address);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, backlog: 2048 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#running.set(l.name, { key: listenerKey(l, config), config: l, server, sockets, sessions, contexts });
  }

  async #stop(name: string, r: Running) {
    this.#running.delete(name);
    await closeServer(r, 0);
  }

  /** Re-read every TLS listener's certificates (POST /certificates/reload); returns failures. */
  reloadCertificates(): string[] {
    const failed: string[] = [];
    for (const [name, r] of this.#running) {
      if (!r.contexts) continue;
      if (r.contexts.reload())
        (r.server as unknown as { setSecureContext(o: object): void }).setSecureContext(
          r.contexts.defaultContextOptions(),
        );
      else failed.push(name);
    }
    return failed;
  }

  /** Bound addresses by listener name ("127.0.0.1:41234"). */
  addresses(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, r] of this.#running) {
      const a = r.server.address() as AddressInfo | null;
      if (a) out[name] = formatAddress(a.address, a.port);
    }
    return out;
  }

  /** Open downstream connections across all listeners. */
  connectionCount(): number {
    let n = 0;
    for (const r of this.#running.values()) n += r.sockets.size;
    return n;
  }

  /**
   * Stop accepting everywhere and close idle connections (HTTP/2 sessions get a GOAWAY); returns a
   * function that destroys whatever is still open, for when in-flight work is done or the deadline hits.
   */
  stopAccepting(): () => void {
    const all = [...this.#running.values()];
    this.#running.clear();
    for (const r of all) {
      r.server.close();
      closeIdle(r);
    }
    return () => {
      // end() after pending writes flush, so a response finished just now is not cut short.
      for (const r of all) for (const s of r.sockets) s.destroySoon();
    };
  }
}

/** What makes a listener be replaced when it changes: all but the revocations, which apply in place. */
function listenerKey(l: ListenerConfig, config: Config): string {
  const tls = l.tls && { ...l.tls, revokedGateways: undefined };
  return JSON.stringify([l.address, l.protocol, l.h2c, tls ?? null, config.gateway.limits]);
}

/** Close idle HTTP/1 keep-alive connections and send GOAWAY on HTTP/2 sessions. */
function closeIdle(r: Running) {
  const inner = (r.server as net.Server & { inner?: { closeIdleConnections(): void } }).inner;
  (r.server as unknown as { closeIdleConnections?: () => void }).closeIdleConnections?.();
  inner?.closeIdleConnections();
  for (const session of r.sessions) session.close();
}

/** Stop accepting; close idle connections now and the rest when they finish or the grace ends. */
async function closeServer(r: Running, graceMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => r.server.close(() => resolve()));
  closeIdle(r);
  const timer = setTimeout(() => {
    for (const s of r.sockets) s.destroy();
  }, graceMs);
  await closed;
  clearTimeout(timer);
}
