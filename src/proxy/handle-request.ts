import { randomUUID } from 'node:crypto';
import type { Dispatcher } from 'undici';
import type { ServerResponse } from 'node:http';
import type { ErrorCode } from '../common/errors.js';
import type { FilterResponse, PeerIdentity, RequestContext } from '../filters/filter.js';
import { runFilters } from '../filters/chain.js';
import { hostOf } from '../router/route-table.js';
import { buildUpstreamHeaders, flatToObject, type ForwardFacts } from './headers.js';
import { respondError, type DownstreamResponse } from './respond.js';
import { ProxyRequest, type ProxyEnv } from './forwarder.js';
import { pickCluster } from './route-runtime.js';
import { scanRequest, type DownstreamRequest, type RequestScan } from './request-scan.js';
import type { CompiledRoute, Snapshot } from './snapshot.js';
import type { RouteTable } from '../router/route-table.js';
import { sendMirror } from './mirror.js';

/** What a listener contributes to each request. */
export interface ListenerContext {
  readonly name: string;
  readonly proto: 'http' | 'https';
  /** Send the verified client certificate upstream as x-forwarded-client-cert. */
  readonly forwardClientCert: boolean;
  /** Verified client certificate identity of the connection, if any. */
  peerOf(req: DownstreamRequest): PeerIdentity | undefined;
}

/** Per-worker request-path state that outlives snapshots. */
export interface RequestEnv extends ProxyEnv {
  inFlight: number;
  shedding: boolean;
  normalize(path: string): string | null;
  xfcc(peer: PeerIdentity): string;
}

const scan: RequestScan = { authority: '', hostCount: 0, hasBody: false, contentLength: -1 };

/**
 * The request path: guard -> route -> filters -> direct/redirect/proxy. Everything here reads the
 * snapshot the request started with; nothing is compiled per request.
 */
export function handleRequest(snap: Snapshot, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, res: DownstreamResponse): void {
  const limits = snap.config.gateway.limits;
  const guard = guardRequest(req, limits);
  if (guard) return respondError(res, guard, undefined, true);
  scanRequest(req, scan);
  if (scan.hostCount > 1 || scan.authority === '') return respondError(res, 'bad_request', undefined, true);
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const rawPath = q === -1 ? url : url.slice(0, q);
  const path = env.normalize(rawPath);
  if (path === null) return respondError(res, 'bad_request');
  const query = q === -1 ? '' : url.slice(q);
  const table = snap.tables.get(listener.name) as RouteTable<CompiledRoute>;
  const route = table?.match(hostOf(scan.authority), path, req.method ?? 'GET', req, query);
  if (!route) return countAndRespond(env, res, 'no_route');
  if (env.shedding || (limits.maxInFlightRequests && env.inFlight >= limits.maxInFlightRequests)) return countAndRespond(env, res, 'overloaded', { 'x-meridian-overloaded': 'true' });
  if (route.maxBodyBytes && scan.contentLength > route.maxBodyBytes) return respondError(res, 'payload_too_large', undefined, true);
  const authority = scan.authority;
  const hasBody = scan.hasBody;
  if (route.filters.length === 0) return dispatchRoute(snap, route, listener, env, req, res, path, query, authority, hasBody, undefined);
  const ctx = filterContext(req, route, listener, env, path, query, authority);
  const result = runFilters(route.filters, ctx);
  if (result instanceof Promise) {
    result.then(
      (r) => (r ? respondFilter(res, r) : dispatchRoute(snap, route, listener, env, req, res, path, query, authority, hasBody, ctx)),
      () => respondError(res, 'internal_error'),
    );
  } else if (result) respondFilter(res, result);
  else dispatchRoute(snap, route, listener, env, req, res, path, query, authority, hasBody, ctx);
}

function guardRequest(req: DownstreamRequest, limits: Snapshot['config']['gateway']['limits']): ErrorCode | undefined {
  // Node's parser accepts HTTP/0.9-style request lines and keeps parsing headers: refuse them.
  if (req.httpVersionMajor < 1) return 'bad_request';
  if (req.method === 'CONNECT') return 'method_not_allowed';
  const url = req.url ?? '';
  if (url.length > limits.maxUriLength) return 'uri_too_long';
  if (url.charCodeAt(0) !== 47 /* '/' */) return 'bad_request';
  if (req.rawHeaders.length > limits.maxHeaders * 2) return 'headers_too_large';
  return undefined;
}

function countAndRespond(env: RequestEnv, res: DownstreamResponse, code: ErrorCode, extra?: Record<string, string>) {
  void env;
  respondError(res, code, extra);
}

function respondFilter(res: DownstreamResponse, r: FilterResponse) {
  if (r.status === 429 || r.status === 401 || r.status === 403) {
    const body = r.body ?? `${r.code}\n`;
    res.writeHead(r.status, { 'content-type': 'text/plain; charset=utf-8', 'x-meridian-error': r.code, ...r.headers });
    res.end(body);
    return;
  }
  respondError(res, r.code, r.headers);
}

function filterContext(req: DownstreamRequest, route: CompiledRoute, listener: ListenerContext, env: RequestEnv, path: string, query: string, authority: string): RequestContext {
  return {
    method: req.method ?? 'GET', path, query, authority, headers: req.headers, clientIp: clientIp(req, env),
    peer: listener.peerOf(req), routeName: route.name, requestId: '', upstreamHeaders: [], upstreamStrip: [], responseHeaders: [],
  };
}

/** The client address as seen on the socket, IPv4-mapped prefix removed. */
export function clientIp(req: DownstreamRequest, _env?: RequestEnv): string {
  const a = req.socket?.remoteAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

function dispatchRoute(snap: Snapshot, route: CompiledRoute, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, res: DownstreamResponse, path: string, query: string, authority: string, hasBody: boolean, ctx: RequestContext | undefined): void {
  if (route.kind === 'direct') return respondDirect(route, res, ctx);
  if (route.kind === 'redirect') return respondRedirect(route, listener, res, authority, path, query);
  const cluster = pickCluster(route, env.rng.random());
  if (!cluster) return respondError(res, 'no_healthy_upstream');
  const facts: ForwardFacts = {
    clientIp: clientIp(req), proto: listener.proto, authority: route.rewriteHost ?? authority,
    trustForwarded: snap.config.gateway.trustForwardedHeaders, rejectUnderscores: snap.config.gateway.rejectUnderscoreHeaders,
    upgrade: false, identity: snap.identityHeaders, requestId: undefined, traceparent: undefined,
  };
  const headers: string[] = [];
  const bad = buildUpstreamHeaders(req.rawHeaders, facts, route.requestOps, headers);
  if (bad) return respondError(res, bad, undefined, true);
  addIdentityHeaders(headers, facts, ctx, listener, req, env);
  const upstreamPath = rewritePath(route, path) + query;
  const opts: Dispatcher.DispatchOptions = {
    path: upstreamPath, method: (req.method ?? 'GET') as Dispatcher.HttpMethod, headers, body: hasBody ? req : null,
    headersTimeout: route.retry?.perTryTimeoutMs || route.timeoutMs, bodyTimeout: route.idleTimeoutMs,
  };
  if (route.mirror && !hasBody && env.rng.random() < route.mirror.fraction) sendMirror(route.mirror.cluster, opts);
  if (isGone(req, res)) return;
  const hashKey = cluster.hashKeyOf ? cluster.hashKeyOf(req.headers, facts.clientIp) : undefined;
  const p = new ProxyRequest(req, res, route, cluster, env, opts, hashKey);
  p.requestId = facts.requestId!;
  if (ctx && ctx.responseHeaders.length) p.extraResponseHeaders = ctx.responseHeaders;
  env.inFlight++;
  p.start();
}

/** True when the client already reset the stream or closed the connection (no 'close' will come). */
function isGone(req: DownstreamRequest, res: DownstreamResponse): boolean {
  if (req.httpVersionMajor === 2) return (res as import('node:http2').Http2ServerResponse).stream.destroyed;
  return (res as ServerResponse).destroyed || req.socket.destroyed;
}

function addIdentityHeaders(headers: string[], facts: ForwardFacts, ctx: RequestContext | undefined, listener: ListenerContext, req: DownstreamRequest, env: RequestEnv) {
  if (facts.requestId === undefined) headers.push('x-request-id', (facts.requestId = randomUUID()));
  if (facts.traceparent === undefined) headers.push('traceparent', newTraceparent(facts.requestId));
  if (ctx) {
    if (ctx.upstreamStrip.length) removeHeaders(headers, ctx.upstreamStrip);
    for (let i = 0; i < ctx.upstreamHeaders.length; i++) headers.push(ctx.upstreamHeaders[i]);
  }
  if (listener.forwardClientCert) {
    const peer = listener.peerOf(req);
    if (peer) headers.push('x-forwarded-client-cert', env.xfcc(peer));
  }
}

/** Drop credentials the filters consumed (an API key, a bearer token) from the upstream headers. */
function removeHeaders(headers: string[], names: readonly string[]) {
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    if (names.includes(headers[r].toLowerCase())) continue;
    headers[w++] = headers[r];
    headers[w++] = headers[r + 1];
  }
  headers.length = w;
}

/** W3C trace context for a request that arrived without one; the trace id reuses the request id's entropy. */
function newTraceparent(requestId: string): string {
  const span = randomUUID();
  return `00-${uuidHex(requestId)}-${span.slice(0, 8)}${span.slice(9, 13)}${span.slice(14, 18)}-01`;
}

/** The 32 hex digits of a UUID, or a fresh one when the request id is not a UUID. */
function uuidHex(id: string): string {
  const u = id.length === 36 && id.charCodeAt(8) === 45 ? id : randomUUID();
  return u.slice(0, 8) + u.slice(9, 13) + u.slice(14, 18) + u.slice(19, 23) + u.slice(24);
}

function rewritePath(route: CompiledRoute, path: string): string {
  const rw = route.rewritePrefix;
  if (!rw || !path.startsWith(rw.from)) return path;
  const rest = path.slice(rw.from.length);
  return rw.to.endsWith('/') && rest.startsWith('/') ? rw.to + rest.slice(1) : rw.to + rest;
}

function respondDirect(route: CompiledRoute, res: DownstreamResponse, ctx: RequestContext | undefined) {
  const d = route.direct!;
  const headers: Record<string, string | number> = { 'content-length': d.body.length, ...d.headers };
  if (ctx?.responseHeaders.length) Object.assign(headers, flatToObject(ctx.responseHeaders));
  res.writeHead(d.status, headers);
  res.end(d.body);
  route.counters[(d.status / 100) | 0]?.inc();
}

function respondRedirect(route: CompiledRoute, listener: ListenerContext, res: DownstreamResponse, authority: string, path: string, query: string) {
  const r = route.config.redirect!;
  const location = `${r.scheme ?? listener.proto}://${r.host ?? authority}${r.path ?? path}${query}`;
  (res as ServerResponse).writeHead(r.status, { location, 'content-length': 0 });
  res.end();
  route.counters[3].inc();
}
