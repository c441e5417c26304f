import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { randomUUID } from 'node:crypto';
import { ErrorCodes, type ErrorCode } from '../common/errors.js';
import type { UpstreamHost } from '../cluster/cluster-manager.js';
import { hostOf } from '../router/route-table.js';
import { buildResponseHeaders, buildUpstreamHeaders, type ForwardFacts } from './headers.js';
import { pickCluster } from './route-runtime.js';
import { clientIp, type ListenerContext, type RequestEnv } from './handle-request.js';
import type { CompiledRoute, Snapshot } from './snapshot.js';

/** Write a gateway error on a raw socket (no HTTP response object exists during an upgrade). */
function socketError(socket: Duplex, code: ErrorCode) {
  const status = ErrorCodes[code];
  socket.end(`HTTP/1.1 ${status} ${code}\r\nconnection: close\r\ncontent-length: 0\r\nx-meridian-error: ${code}\r\n\r\n`);
}

/**
 * WebSocket (and other HTTP/1.1 Upgrade) proxying: the upgrade is forwarded through undici and, on
 * 101, the two sockets are piped together. `Upgrade: h2c` is refused: it would let a client switch
 * protocols behind the gateway's back.
 */
export function handleUpgrade(snap: Snapshot, listener: ListenerContext, env: RequestEnv, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy());
  const upgrade = req.headers.upgrade ?? '';
  if (upgrade.toLowerCase() === 'h2c' || req.httpVersionMajor < 1) return socketError(socket, 'bad_request');
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = env.normalize(q === -1 ? url : url.slice(0, q));
  if (path === null) return socketError(socket, 'bad_request');
  const authority = req.headers.host ?? '';
  const route = snap.tables.get(listener.name)?.match(hostOf(authority), path, req.method ?? 'GET', req, q === -1 ? '' : url.slice(q));
  if (!route) return socketError(socket, 'no_route');
  if (route.kind !== 'cluster' && route.kind !== 'weighted') return socketError(socket, 'method_not_allowed');
  const cluster = pickCluster(route, env.rng.random());
  const host = cluster?.lb.pick(undefined) as UpstreamHost | undefined;
  if (!host) return socketError(socket, 'no_healthy_upstream');
  const facts: ForwardFacts = {
    clientIp: clientIp(req), proto: listener.proto, authority: route.rewriteHost ?? authority, trustForwarded: snap.config.gateway.trustForwardedHeaders,
    rejectUnderscores: snap.config.gateway.rejectUnderscoreHeaders, upgrade: false, identity: snap.identityHeaders, requestId: undefined, traceparent: undefined,
  };
  const headers: string[] = [];
  const bad = buildUpstreamHeaders(req.rawHeaders, facts, route.requestOps, headers);
  if (bad) return socketError(socket, bad);
  if (!facts.requestId) headers.push('x-request-id', randomUUID());
  host.pool.dispatch({ path: url, method: 'GET', headers, upgrade, headersTimeout: route.timeoutMs } as Dispatcher.DispatchOptions, upgradeHandler(route, socket, head));
}

function upgradeHandler(route: CompiledRoute, client: Duplex, head: Buffer): Dispatcher.DispatchHandler {
  return {
    onConnect() {},
    onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, upstream: Duplex) {
      const headers = buildResponseHeaders(rawHeaders ?? [], route.responseOps, undefined, true);
      let out = `HTTP/1.1 ${statusCode} Switching Protocols\r\n`;
      for (let i = 0; i < headers.length; i += 2) out += `${headers[i]}: ${headers[i + 1]}\r\n`;
      client.write(`${out}\r\n`);
      if (head.length) upstream.write(head);
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      upstream.pipe(client).pipe(upstream);
      route.counters[1].inc();
    },
    onHeaders(statusCode: number) {
      // The upstream refused the upgrade: answer with its status, without a body.
      client.end(`HTTP/1.1 ${statusCode} Upgrade Refused\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      return false;
    },
    onData() { return true; },
    onComplete() {},
    onError() {
      if (client.writable) socketError(client, 'upstream_connect_failure');
    },
  };
}
