import type { Dispatcher } from 'undici';
import type { ServerResponse } from 'node:http';
import type { PeerIdentity, RequestContext } from '../filters/filter.js';
import { buildUpstreamHeaders, flatToObject } from './headers.js';
import { respondError, type DownstreamResponse } from './respond.js';
import { ProxyRequest, type ProxyEnv } from './forwarder.js';
import { pickCluster } from './route-runtime.js';
import type { DownstreamRequest } from './request-scan.js';
import type { CompiledRoute, Snapshot } from './snapshot.js';
import { sendMirror } from './mirror.js';
import { addIdentityHeaders, clientIp, forwardFacts, newExchange, routeRequest, runRouteFilters, upstreamPath, type AfterFilters, type Exchange } from './request-path.js';

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

const OVERLOADED = { 'x-meridian-overloaded': 'true' };

/**
 * The request path: guard -> route -> filters -> direct/redirect/proxy. Everything here reads the
 * snapshot the request started with; nothing is compiled per request.
 */
export function handleRequest(snap: Snapshot, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, res: DownstreamResponse): void {
  const t = routeRequest(snap, listener, env, req);
  if (t.error) return respondError(res, t.error, undefined, t.close);
  const route = t.route!;
  const limits = snap.config.gateway.limits;
  if (env.shedding || (limits.maxInFlightRequests && env.inFlight >= limits.maxInFlightRequests)) return respondError(res, 'overloaded', OVERLOADED);
  if (route.maxBodyBytes && t.contentLength > route.maxBodyBytes) return respondError(res, 'payload_too_large', undefined, true);
  if (route.filters.length === 0) return dispatchRoute(snap, route, listener, env, req, res, t.path, t.query, t.authority, t.hasBody, undefined);
  runRouteFilters(newExchange(snap, listener, env, req, t, res), AFTER_FILTERS);
}

/** Plain requests: a refusal goes on the request's own response. */
const AFTER_FILTERS: AfterFilters = {
  pass: (x) => dispatchRoute(x.snap, x.route, x.listener, x.env, x.req, x.res!, x.path, x.query, x.authority, x.hasBody, x),
  responseFor: (x) => x.res,
};

function dispatchRoute(snap: Snapshot, route: CompiledRoute, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, res: DownstreamResponse, path: string, query: string, authority: string, hasBody: boolean, x: Exchange | undefined): void {
  if (route.kind === 'direct') return respondDirect(route, res, x);
  if (route.kind === 'redirect') return respondRedirect(route, listener, res, authority, path, query);
  const cluster = pickCluster(route, env.rng.random());
  if (!cluster) return respondError(res, 'no_healthy_upstream');
  const facts = forwardFacts(snap, route, listener, req, authority);
  const headers: string[] = [];
  const bad = buildUpstreamHeaders(req.rawHeaders, facts, route.requestOps, headers);
  if (bad) return respondError(res, bad, undefined, true);
  addIdentityHeaders(headers, facts, x, listener, req, env);
  const opts: Dispatcher.DispatchOptions = {
    path: upstreamPath(route, path, query), method: (req.method ?? 'GET') as Dispatcher.HttpMethod, headers, body: hasBody ? req : null,
    headersTimeout: route.retry?.perTryTimeoutMs || route.timeoutMs, bodyTimeout: route.idleTimeoutMs,
  };
  if (route.mirror && !hasBody && env.rng.random() < route.mirror.fraction) sendMirror(route.mirror.cluster, opts);
  if (isGone(req, res)) return;
  // Source-IP hashing uses the client address after trusted-proxy handling, like rate limits and RBAC.
  const hashKey = cluster.hashKeyOf ? cluster.hashKeyOf(req.headers, x?.clientIp ?? clientIp(req, facts.trustForwarded)) : undefined;
  const p = new ProxyRequest(req, res, route, cluster, env, opts, hashKey);
  p.requestId = facts.requestId!;
  if (x && x.responseHeaders.length) p.extraResponseHeaders = x.responseHeaders;
  env.inFlight++;
  p.start();
}

/** True when the client already reset the stream or closed the connection (no 'close' will come). */
function isGone(req: DownstreamRequest, res: DownstreamResponse): boolean {
  if (req.httpVersionMajor === 2) return (res as import('node:http2').Http2ServerResponse).stream.destroyed;
  return (res as ServerResponse).destroyed || req.socket.destroyed;
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
