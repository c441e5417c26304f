import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../common/errors.js';
import type { FilterResponse, RequestContext } from '../filters/filter.js';
import { runFilters } from '../filters/chain.js';
import { hostOf } from '../router/route-table.js';
import { removeHeaders, type ForwardFacts } from './headers.js';
import { ProxyRequest } from './forwarder.js';
import type { DownstreamResponse } from './respond.js';
import { scanRequest, type DownstreamRequest, type RequestScan } from './request-scan.js';
import type { CompiledRoute, Snapshot } from './snapshot.js';
import type { ListenerContext, RequestEnv } from './handle-request.js';

/*
 * The stages every routed request goes through, whether it is a plain request (handle-request.ts)
 * or an Upgrade (upgrade.ts): guard and route, run the route's filters (answering refusals through
 * the same bookkeeping as proxied responses), then build the upstream request's identity headers.
 * Sharing them is what keeps an upgrade from skipping authentication or rate limits.
 */

/** Where a request goes, filled by {@link routeRequest}. */
export interface Target extends RequestScan {
  route: CompiledRoute | undefined;
  /** Set instead of `route` when the request is refused before routing or matches no route. */
  error: ErrorCode | undefined;
  /** The refusal leaves the connection's framing in doubt: close it after answering. */
  close: boolean;
  /** Normalized path, without the query. */
  path: string;
  /** Raw query including its '?', or ''. */
  query: string;
}

// One scratch object: it is read synchronously by the caller before anything can run in between.
const target: Target = { authority: '', hostCount: 0, hasBody: false, contentLength: -1, route: undefined, error: undefined, close: false, path: '', query: '' };

/**
 * Guard the request line and headers, find the authority, normalize the path and match a route.
 * The result is valid until the caller yields (it is a shared scratch object).
 */
export function routeRequest(snap: Snapshot, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest): Target {
  const t = target;
  t.route = undefined;
  t.error = guardRequest(req, snap.config.gateway.limits);
  if (t.error) return refused(t, t.error, true);
  scanRequest(req, t);
  if (t.hostCount > 1 || t.authority === '') return refused(t, 'bad_request', true);
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = env.normalize(q === -1 ? url : url.slice(0, q));
  if (path === null) return refused(t, 'bad_request', false);
  t.path = path;
  t.query = q === -1 ? '' : url.slice(q);
  t.route = snap.tables.get(listener.name)?.match(hostOf(t.authority), path, req.method ?? 'GET', req, t.query);
  return t.route ? t : refused(t, 'no_route', false);
}

function refused(t: Target, code: ErrorCode, close: boolean): Target {
  t.error = code;
  t.close = close;
  return t;
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

/**
 * A routed request in the filter stage. It is the filters' RequestContext and also carries what the
 * request path needs after them, so a filtered request costs one object whether its filters answer
 * synchronously or not (no per-request closures).
 */
export interface Exchange extends RequestContext {
  readonly snap: Snapshot;
  readonly route: CompiledRoute;
  readonly listener: ListenerContext;
  readonly env: RequestEnv;
  readonly req: DownstreamRequest;
  readonly hasBody: boolean;
  /** A plain request's response; upgrades have none until one is needed for a refusal. */
  readonly res: DownstreamResponse | undefined;
  /** Upgrades only: the client's socket and the bytes read past the request head. */
  readonly socket: Duplex | undefined;
  readonly head: Buffer | undefined;
}

/** Build the exchange of a routed request (call before anything yields: `t` is scratch). */
export function newExchange(snap: Snapshot, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, t: Target, res: DownstreamResponse | undefined, socket?: Duplex, head?: Buffer): Exchange {
  const trust = snap.config.gateway.trustForwardedHeaders;
  return {
    method: req.method ?? 'GET', path: t.path, query: t.query, authority: t.authority, headers: req.headers, clientIp: clientIp(req, trust),
    peer: listener.peerOf(req), routeName: t.route!.name, requestId: requestIdOf(req), upstreamHeaders: [], upstreamStrip: [], responseHeaders: [],
    snap, route: t.route!, listener, env, req, hasBody: t.hasBody, res, socket, head,
  };
}

/** The client's request id, or a new one: known before the filters so their logs and the access log agree. */
function requestIdOf(req: DownstreamRequest): string {
  const id = req.headers['x-request-id'];
  return typeof id === 'string' && id !== '' ? id : randomUUID();
}

/** What a kind of request (plain, upgrade) does once its route's filters have decided. */
export interface AfterFilters {
  /** The filters let the request through. */
  pass(x: Exchange): void;
  /** Where to write a refusal; undefined when the client is already gone. */
  responseFor(x: Exchange): DownstreamResponse | undefined;
}

const FILTER_FAILED: FilterResponse = Object.freeze({ status: 500, code: 'internal_error' as const });

/** Run the route's filters; synchronous filters never cost a promise. */
export function runRouteFilters(x: Exchange, then: AfterFilters): void {
  const result = runFilters(x.route.filters, x);
  if (!(result instanceof Promise)) return result ? refuse(x, then, result) : then.pass(x);
  result.then((r) => (r ? refuse(x, then, r) : then.pass(x)), () => refuse(x, then, FILTER_FAILED));
}

/**
 * Answer a filter's refusal (401, 403, 429, a fail-closed 503). It finishes like a proxied request,
 * so it is counted per route and written to the access log with its error code.
 */
function refuse(x: Exchange, then: AfterFilters, r: FilterResponse): void {
  const res = then.responseFor(x);
  if (!res) return;
  const p = ProxyRequest.local(x.req, res, x.route, x.env);
  p.requestId = x.requestId;
  x.env.inFlight++; // env.onFinish releases it, as for a proxied request
  p.refuse(r.code, r.headers, r.body);
}

/** The TCP peer's address, IPv4-mapped prefix removed: what the gateway appends to X-Forwarded-For. */
export function peerIp(req: DownstreamRequest): string {
  return unmapped(req.socket?.remoteAddress ?? '');
}

function unmapped(a: string): string {
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * The client address for rate-limit keys, RBAC `sourceCidr` and source-IP hashing. At the edge
 * (`trustForwardedHeaders: false`) it is the peer: X-Forwarded-For is client input. Behind a trusted
 * proxy (`true`) it is the right-most X-Forwarded-For entry, the address that proxy saw; entries to
 * its left were written by parties we cannot vouch for. Falls back to the peer when the header is
 * absent or its last entry is not an IP address.
 */
export function clientIp(req: DownstreamRequest, trustForwarded: boolean): string {
  const peer = peerIp(req);
  if (!trustForwarded) return peer;
  const h = req.headers['x-forwarded-for'];
  const xff = Array.isArray(h) ? h[h.length - 1] : h;
  if (!xff) return peer;
  const last = unmapped(xff.slice(xff.lastIndexOf(',') + 1).trim());
  return isIP(last) ? last : peer;
}

/** The per-request facts the upstream header builder needs (one object per forwarded request). */
export function forwardFacts(snap: Snapshot, route: CompiledRoute, listener: ListenerContext, req: DownstreamRequest, authority: string): ForwardFacts {
  const g = snap.config.gateway;
  return {
    clientIp: peerIp(req), proto: listener.proto, authority: route.rewriteHost ?? authority, trustForwarded: g.trustForwardedHeaders,
    rejectUnderscores: g.rejectUnderscoreHeaders, upgrade: false, identity: snap.identityHeaders, requestId: undefined, traceparent: undefined,
  };
}

/**
 * Headers the gateway vouches for: request id and traceparent (when the client sent none), what the
 * filters learned (forwarded claims) minus the credentials they consumed, and the verified client
 * certificate.
 */
export function addIdentityHeaders(headers: string[], facts: ForwardFacts, x: Exchange | undefined, listener: ListenerContext, req: DownstreamRequest, env: RequestEnv): void {
  if (facts.requestId === undefined) headers.push('x-request-id', (facts.requestId = x?.requestId ?? randomUUID()));
  if (facts.traceparent === undefined) headers.push('traceparent', newTraceparent(facts.requestId));
  if (x) {
    // Credentials the filters consumed (an API key, a bearer token) do not go upstream.
    if (x.upstreamStrip.length) removeHeaders(headers, x.upstreamStrip);
    for (let i = 0; i < x.upstreamHeaders.length; i++) headers.push(x.upstreamHeaders[i]);
  }
  if (listener.forwardClientCert) {
    const peer = listener.peerOf(req);
    if (peer) headers.push('x-forwarded-client-cert', env.xfcc(peer));
  }
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

/** The upstream path: the normalized path (the one routing and RBAC judged) with the route's prefix rewrite. */
export function upstreamPath(route: CompiledRoute, path: string, query: string): string {
  const rw = route.rewritePrefix;
  if (!rw || !path.startsWith(rw.from)) return path + query;
  const rest = path.slice(rw.from.length);
  return (rw.to.endsWith('/') && rest.startsWith('/') ? rw.to + rest.slice(1) : rw.to + rest) + query;
}
