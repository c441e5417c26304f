import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { ErrorCode } from '../common/errors.js';
import type { UpstreamHost } from '../cluster/cluster-manager.js';
import { buildResponseHeaders, buildUpstreamHeaders } from './headers.js';
import { classifyUpstreamError } from './error-map.js';
import { respondError } from './respond.js';
import { pickCluster } from './route-runtime.js';
import { addIdentityHeaders, forwardFacts, newExchange, routeRequest, runRouteFilters, upstreamPath, type AfterFilters, type Exchange } from './request-path.js';
import type { ListenerContext, RequestEnv } from './handle-request.js';
import type { CompiledRoute, Snapshot } from './snapshot.js';

/**
 * WebSocket (and other HTTP/1.1 Upgrade) proxying. The request takes the same path as a plain one
 * (guards, routing, the route's filters, identity headers, the normalized and rewritten path); it is
 * then forwarded through undici and, on 101, the two sockets are piped together. `Upgrade: h2c` is
 * refused: it would let a client switch protocols behind the gateway's back.
 */
export function handleUpgrade(snap: Snapshot, listener: ListenerContext, env: RequestEnv, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy());
  if ((req.headers.upgrade ?? '').toLowerCase() === 'h2c') return answer(req, socket, 'bad_request');
  const t = routeRequest(snap, listener, env, req);
  if (t.error) return answer(req, socket, t.error);
  if (t.route!.kind !== 'cluster' && t.route!.kind !== 'weighted') return answer(req, socket, 'method_not_allowed');
  // Upgrades are rare next to plain requests: always building the exchange keeps one code path.
  runRouteFilters(newExchange(snap, listener, env, req, t, undefined, socket, head), AFTER_FILTERS);
}

/** Upgrades: a refusal is written on a response created on the raw socket. */
const AFTER_FILTERS: AfterFilters = {
  pass: forwardUpgrade,
  responseFor: (x) => responseOn(x.req as IncomingMessage, x.socket!),
};

function forwardUpgrade(x: Exchange): void {
  const req = x.req as IncomingMessage;
  const socket = x.socket!;
  if (socket.destroyed) return; // the client left while the filters ran
  const route = x.route;
  const host = pickCluster(route, x.env.rng.random())?.lb.pick(undefined) as UpstreamHost | undefined;
  if (!host) return answer(req, socket, 'no_healthy_upstream');
  const facts = forwardFacts(x.snap, route, x.listener, req, x.authority);
  const headers: string[] = [];
  const bad = buildUpstreamHeaders(req.rawHeaders, facts, route.requestOps, headers);
  if (bad) return answer(req, socket, bad);
  addIdentityHeaders(headers, facts, x, x.listener, req, x.env);
  const opts = { path: upstreamPath(route, x.path, x.query), method: 'GET', headers, upgrade: req.headers.upgrade, headersTimeout: route.timeoutMs };
  host.pool.dispatch(opts as Dispatcher.DispatchOptions, upgradeHandler(route, req, socket, x.head!));
}

/**
 * A response object on the upgrade's socket, so refusals and errors are written, counted and logged
 * by the same code as for plain requests (Node creates one for every request except an upgrade,
 * whose socket it hands over raw). The connection closes after it. Undefined when the socket cannot
 * take a response: gone, or still carrying a pipelined earlier response.
 */
function responseOn(req: IncomingMessage, socket: Duplex): ServerResponse | undefined {
  if (socket.destroyed || !socket.writable) return undefined;
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  try {
    res.assignSocket(socket as Socket);
  } catch {
    socket.destroy();
    return undefined;
  }
  res.once('finish', () => (socket as Socket).destroySoon());
  return res;
}

/** Answer a gateway error on the upgrade's socket and close it. */
function answer(req: IncomingMessage, socket: Duplex, code: ErrorCode): void {
  const res = responseOn(req, socket);
  if (res) respondError(res, code, undefined, true);
}

function upgradeHandler(route: CompiledRoute, req: IncomingMessage, client: Duplex, head: Buffer): Dispatcher.DispatchHandler {
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
    onError(err: Error) {
      answer(req, client, classifyUpstreamError(err));
    },
  };
}
