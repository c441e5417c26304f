import type { Dispatcher } from 'undici';
import type { ServerResponse } from 'node:http';
import type { PeerIdentity } from '../filters/filter.js';
import { buildUpstreamHeaders, contentLengthIn, flatToObject } from './headers.js';
import type { DownstreamResponse } from './respond.js';
import { ProxyRequest, type ProxyEnv } from './forwarder.js';
import { pickCluster, replacePrefix } from './route-runtime.js';
import type { DownstreamRequest } from './request-scan.js';
import type { CompiledRoute, Snapshot } from './snapshot.js';
import { MirrorTee, sendMirror, type MirrorPolicy } from './mirror.js';
import { ReplayableBody } from './replay-body.js';
import { LimitedBody } from './body-limit.js';
import type { Readable } from 'node:stream';
import { addIdentityHeaders, clientIp, clientRequestId, forwardFacts, newExchange, routeRequest, runRouteFilters, upstreamPath, upstreamQuery, type AfterFilters, type Exchange } from './request-path.js';

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
  shedding: boolean;
  normalize(path: string): string | null;
  xfcc(peer: PeerIdentity): string;
}

/**
 * The request path: guard -> route -> filters -> direct/redirect/proxy. Everything here reads the
 * snapshot the request started with; nothing is compiled per request. Every response, the
 * gateway's own included, finishes through a ProxyRequest (counted, access-logged, in flight).
 */
export function handleRequest(snap: Snapshot, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, res: DownstreamResponse): void {
  const t = routeRequest(snap, listener, env, req);
  if (t.error) return ProxyRequest.answer(req, res, t.route, env, clientRequestId(req), t.error, undefined, undefined, t.close);
  const route = t.route!;
  if (route.maxBodyBytes && t.contentLength > route.maxBodyBytes) return ProxyRequest.answer(req, res, route, env, clientRequestId(req), 'payload_too_large', undefined, undefined, true);
  if (route.filters.length === 0) return dispatchRoute(snap, route, listener, env, req, res, t.path, t.query, t.authority, t.hasBody, undefined);
  runRouteFilters(newExchange(snap, listener, env, req, t, res), AFTER_FILTERS);
}

/** Plain requests: a refusal goes on the request's own response. */
const AFTER_FILTERS: AfterFilters = {
  pass: (x) => dispatchRoute(x.snap, x.route, x.listener, x.env, x.req, x.res!, x.path, x.query, x.authority, x.hasBody, x),
  responseFor: (x) => x.res,
};

function dispatchRoute(snap: Snapshot, route: CompiledRoute, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, res: DownstreamResponse, path: string, query: string, authority: string, hasBody: boolean, x: Exchange | undefined): void {
  if (route.kind === 'direct') return respondDirect(route, env, req, res, x);
  if (route.kind === 'redirect') return respondRedirect(route, listener, env, req, res, authority, path, query, x);
  forward(snap, route, listener, env, req, res, path, query, authority, hasBody, x, undefined);
}

/**
 * Send a routed request to its cluster (an upgrade too, with its `Upgrade` protocol): upstream
 * headers (hop-by-hop and client identity headers stripped, the gateway's identity headers set),
 * the normalized and rewritten path, then a ProxyRequest that runs the attempts.
 */
export function forward(snap: Snapshot, route: CompiledRoute, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, res: DownstreamResponse,
  path: string, query: string, authority: string, hasBody: boolean, x: Exchange | undefined, upgrade: string | undefined): void {
  const cluster = pickCluster(route, env.rng.random());
  if (!cluster) return ProxyRequest.answer(req, res, route, env, x?.requestId ?? clientRequestId(req), 'no_healthy_upstream');
  const facts = forwardFacts(snap, route, listener, req, authority);
  const headers: string[] = [];
  const bad = buildUpstreamHeaders(req.rawHeaders, facts, route.requestOps, headers);
  if (bad) return ProxyRequest.answer(req, res, route, env, x?.requestId ?? clientRequestId(req), bad, undefined, undefined, true);
  // The client address after trusted-proxy handling: x-real-ip, and source-IP hashing (like rate limits
  // and RBAC). At the edge it is the peer address the facts already hold.
  const ip = x ? x.clientIp : facts.trustForwarded ? clientIp(req, true) : facts.clientIp;
  addIdentityHeaders(headers, facts, x, listener, req, env, ip);
  const opts: Dispatcher.DispatchOptions = {
    path: upstreamPath(route, path, upstreamQuery(x, query)), method: (req.method ?? 'GET') as Dispatcher.HttpMethod, headers, body: hasBody ? req : null,
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
  const p = new ProxyRequest(req, res, route, cluster, env, opts, hashKey);
  p.requestId = facts.requestId!;
  if (x && x.responseHeaders.length) p.extraResponseHeaders = x.responseHeaders;
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

function respondDirect(route: CompiledRoute, env: RequestEnv, req: DownstreamRequest, res: DownstreamResponse, x: Exchange | undefined) {
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

function respondRedirect(route: CompiledRoute, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, res: DownstreamResponse, authority: string, path: string, query: string, x: Exchange | undefined) {
  const r = route.config.redirect!;
  const scheme = r.scheme ?? listener.proto;
  const to = r.path ?? (route.redirectPrefix ? replacePrefix(route.redirectPrefix, path) : path);
  const location = `${scheme}://${redirectAuthority(r, scheme, authority)}${to}${upstreamQuery(x, query)}`;
  (res as ServerResponse).writeHead(r.status, { location, 'content-length': 0 });
  res.end();
  ProxyRequest.answered(req, res, route, env, x?.requestId ?? clientRequestId(req), 0);
}
