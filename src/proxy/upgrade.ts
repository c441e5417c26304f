import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../common/errors.js';
import { destroySelf, ProxyRequest } from './forwarder.js';
import { routeRequest, routedOf } from './route.js';
import { newExchange, runRouteFilters, type AfterFilters } from './filter-stage.js';
import { clientRequestId } from './request-facts.js';
import { forward } from './actions/forward.js';
import type { Exchange, ListenerContext, RequestEnv } from './exchange.js';
import type { CompiledRoute, Snapshot } from './snapshot.js';

/**
 * WebSocket (and other HTTP/1.1 Upgrade) proxying. The request takes the same path as a plain one
 * (guards, routing, overload caps, the route's filters, identity headers, the normalized and
 * rewritten path) and is forwarded by a ProxyRequest on a response object created on the socket:
 * errors and refusals are written through it, and on 101 the two sockets are piped together. The
 * upgrade is in flight until the tunnel closes; then it is counted and access-logged.
 * An Upgrade naming h2c anywhere is refused: it would let a client switch protocols behind the
 * gateway's back (h2c smuggling: `Upgrade: websocket, h2c` reaching an h2c-capable upstream).
 */
export function handleUpgrade(
  snap: Snapshot,
  listener: ListenerContext,
  env: RequestEnv,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  socket.on('error', destroySelf);
  // Bytes the client sent past the request head go back on the socket: the tunnel forwards them first.
  if (head.length) socket.unshift(head);
  if (namesH2c(req.rawHeaders)) return answer(req, socket, env, undefined, 'bad_request');
  const t = routeRequest(snap, listener, env, req);
  if (t.error) return answer(req, socket, env, t.route, t.error);
  if (t.route!.kind !== 'cluster' && t.route!.kind !== 'weighted')
    return answer(req, socket, env, t.route, 'method_not_allowed');
  // Upgrades are rare next to plain requests: always building the exchange keeps one code path.
  runRouteFilters(newExchange(routedOf(t), undefined, socket), AFTER_FILTERS);
}

/** True when any Upgrade header (a list, possibly repeated) names h2c, with or without a version. */
function namesH2c(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length !== 7 || raw[i].toLowerCase() !== 'upgrade') continue;
    for (const token of raw[i + 1].split(',')) if (token.trim().split('/')[0].toLowerCase() === 'h2c') return true;
  }
  return false;
}

/** Upgrades: a refusal is written on a response created on the raw socket. */
const AFTER_FILTERS: AfterFilters = {
  pass: forwardUpgrade,
  responseFor: (x) => responseOn(x.req as IncomingMessage, x.socket!),
};

function forwardUpgrade(x: Exchange): void {
  const req = x.req as IncomingMessage;
  const res = responseOn(req, x.socket!);
  if (!res) return; // the client left while the filters ran
  // An upgrade has no request body to forward: its bytes go through the tunnel.
  forward({ ...x, hasBody: false }, res, x, req.headers.upgrade);
}

/** After a response written on an upgrade's socket, the connection closes. */
function closeAfterResponse(this: ServerResponse): void {
  (this.socket as Socket | null)?.destroySoon();
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
  res.once('finish', closeAfterResponse);
  return res;
}

/** Answer a gateway error on the upgrade's socket (counted and logged), then close it. */
function answer(
  req: IncomingMessage,
  socket: Duplex,
  env: RequestEnv,
  route: CompiledRoute | undefined,
  code: ErrorCode,
): void {
  const res = responseOn(req, socket);
  if (res) ProxyRequest.answer(req, res, env, { route, requestId: clientRequestId(req), code, close: true });
}
