import type { Dispatcher } from 'undici';
import type { ServerResponse } from 'node:http';
import { buildUpstreamHeaders, contentLengthIn, flatToObject } from './headers.js';
import { ProxyRequest } from './forwarder.js';
import { pickCluster, replacePrefix } from './route-runtime.js';
import type { CompiledRoute, Snapshot } from './snapshot.js';
import { MirrorTee, sendMirror, type MirrorPolicy } from './mirror.js';
import { ReplayableBody } from './replay-body.js';
import { LimitedBody } from './body-limit.js';
import type { Readable } from 'node:stream';
import { addIdentityHeaders, clientIp, clientRequestId, forwardFacts, newExchange, routeRequest, routed, runRouteFilters, upstreamPath, upstreamQuery, type AfterFilters } from './request-path.js';
import type { Exchange, ListenerContext, RequestEnv, RoutedRequest } from './exchange.js';
import type { DownstreamRequest, DownstreamResponse } from '../listener/downstream.js';

/**
 * The request path: guard -> route -> filters -> direct/redirect/proxy. Everything here reads the
 * snapshot the request started with; nothing is compiled per request. Every response, the
 * gateway's own included, finishes through a ProxyRequest (counted, access-logged, in flight).
 */
export function handleRequest(snap: Snapshot, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, res: DownstreamResponse): void {
  const t = routeRequest(snap, listener, env, req);
  if (t.error) return ProxyRequest.answer(req, res, env, { route: t.route, requestId: clientRequestId(req), code: t.error, close: t.close });
  const route = t.route!;
  if (route.maxBodyBytes && t.contentLength > route.maxBodyBytes) return ProxyRequest.answer(req, res, env, { route, requestId: clientRequestId(req), code: 'payload_too_large', close: true });
  const r = routed(snap, listener, env, req, t);
  if (route.filters.length === 0) return dispatchRoute(r, res, undefined);
  runRouteFilters(newExchange(r, res), AFTER_FILTERS);
}

/** Plain requests: a refusal goes on the request's own response. */
const AFTER_FILTERS: AfterFilters = {
  pass: (x) => dispatchRoute(x, x.res!, x),
  responseFor: (x) => x.res,
};

/** The route's action: a direct response, a redirect, or forwarding. `x`: the exchange when the route has filters. */
function dispatchRoute(r: RoutedRequest, res: DownstreamResponse, x: Exchange | undefined): void {
  if (r.route.kind === 'direct') return respondDirect(r, res, x);
  if (r.route.kind === 'redirect') return respondRedirect(r, res, x);
  forward(r, res, x, undefined);
}

/**
 * Send a routed request to its cluster (an upgrade too, with its `Upgrade` protocol): upstream
 * headers (hop-by-hop and client identity headers stripped, the gateway's identity headers set),
 * the normalized and rewritten path, then a ProxyRequest that runs the attempts.
 */
export function forward(r: RoutedRequest, res: DownstreamResponse, x: Exchange | undefined, upgrade: string | undefined): void {
  const { snap, route, env, req, hasBody } = r;
  const cluster = pickCluster(route, env.rng.random());
  if (!cluster) return ProxyRequest.answer(req, res, env, { route, requestId: x?.requestId ?? clientRequestId(req), code: 'no_healthy_upstream' });
  const facts = forwardFacts(r);
  const headers: string[] = [];
  const bad = buildUpstreamHeaders(req.rawHeaders, facts, route.requestOps, headers);
  if (bad) return ProxyRequest.answer(req, res, env, { route, requestId: x?.requestId ?? clientRequestId(req), code: bad, close: true });
  // The client address after trusted-proxy handling: x-real-ip, and source-IP hashing (like rate limits
  // and RBAC). At the edge it is the peer address the facts already hold.
  const ip = x ? x.clientIp : facts.trustForwarded ? clientIp(req, true) : facts.clientIp;
  addIdentityHeaders(headers, facts, r, x, ip);
  const opts: Dispatcher.DispatchOptions = {
    path: upstreamPath(route, r.path, upstreamQuery(x, r.query)), method: (req.method ?? 'GET') as Dispatcher.HttpMethod, headers, body: hasBody ? req : null,
    headersTimeout: route.retry?.perTryTimeoutMs || route.timeoutMs, bodyTimeout: route.idleTimeoutMs, upgrade,
  };
  // Read from the upstream list: IncomingMessage builds its `headers` object only when asked.
  const length = hasBody ? contentLengthIn(headers) : -1;
  // Innermost, so the mirror's and a retry's copies are of the counted body.
  if (hasBody && route.maxBodyBytes > 0 && length < 0) opts.body = new LimitedBody(req, route.maxBodyBytes);
  if (route.mirror && upgrade === undefined && env.rng.random() < route.mirror.fraction) mirror(route.mirror, opts, hasBody, length);
  if (hasBody && route.retry && route.retry.bufferBytes > 0 && length <= route.retry.bufferBytes) {
    opts.body = new ReplayableBody(opts.body as Readable, route.retry.bufferBytes);
  }
  if (isGone(req, res)) return;
  const hashKey = cluster.hashKeyOf ? cluster.hashKeyOf(req.headers, ip) : undefined;
  const p = new ProxyRequest(req, res, route, cluster, env, opts);
  p.hashKey = hashKey;
  p.requestId = facts.requestId!;
  if (x?.responseHeaders.length) p.extraResponseHeaders = x.responseHeaders;
  p.start();
  if (hasBody && upgrade === undefined && snap.bodyProgress) p.watchBody(snap.bodyProgress);
}

/** Send a body-less request's copy now; tee a body within the mirror's limit and send the copy when it ends. */
function mirror(policy: MirrorPolicy, opts: Dispatcher.DispatchOptions, hasBody: boolean, length: number): void {
  if (!hasBody) return sendMirror(policy.cluster, opts);
  if (length > policy.maxBodyBytes) return;
  opts.body = new MirrorTee(opts.body as Readable, opts, policy);
}

/** True when the client already reset the stream or closed the connection (no 'close' will come). */
function isGone(req: DownstreamRequest, res: DownstreamResponse): boolean {
  if (req.httpVersionMajor === 2) return (res as import('node:http2').Http2ServerResponse).stream.destroyed;
  return (res as ServerResponse).destroyed || req.socket.destroyed;
}

function respondDirect({ route, env, req }: RoutedRequest, res: DownstreamResponse, x: Exchange | undefined) {
  const d = route.direct!;
  // Filters' response headers (rate-limit headers) need a copy; otherwise the compiled headers serve as is.
  res.writeHead(d.status, x?.responseHeaders.length ? { ...d.headers, ...flatToObject(x.responseHeaders) } : d.headers);
  res.end(d.body);
  ProxyRequest.answered(req, res, route, env, x?.requestId ?? clientRequestId(req), d.body.length);
}

/**
 * The Location's authority: without `port`, the given host or the request's authority as it came; with
 * it, the given host or the request's host without its port, then the port unless it is the scheme's
 * default (Gateway API RequestRedirect semantics).
 */
function redirectAuthority(r: NonNullable<CompiledRoute['config']['redirect']>, scheme: string, authority: string): string {
  if (r.port === undefined) return r.host ?? authority;
  const host = r.host ?? authority.replace(/:\d+$/, '');
  const isDefault = (scheme === 'http' && r.port === 80) || (scheme === 'https' && r.port === 443);
  return isDefault ? host : `${host}:${r.port}`;
}

function respondRedirect({ route, listener, env, req, authority, path, query }: RoutedRequest, res: DownstreamResponse, x: Exchange | undefined) {
  const r = route.config.redirect!;
  const scheme = r.scheme ?? listener.proto;
  const to = r.path ?? (route.redirectPrefix ? replacePrefix(route.redirectPrefix, path) : path);
  const location = `${scheme}://${redirectAuthority(r, scheme, authority)}${to}${upstreamQuery(x, query)}`;
  (res as ServerResponse).writeHead(r.status, { location, 'content-length': 0 });
  res.end();
  ProxyRequest.answered(req, res, route, env, x?.requestId ?? clientRequestId(req), 0);
}
