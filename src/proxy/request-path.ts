import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../common/errors.js';
import { randomHex } from '../common/random-hex.js';
import type { FilterResponse } from '../filters/filter.js';
import { runFilters } from '../filters/chain.js';
import { hostOf } from '../router/route-table.js';
import { isValidAuthority } from '../common/address.js';
import { withoutCookies, withoutQueryParams } from '../filters/authn/token-source.js';
import { removeHeaders, type ForwardFacts } from './headers.js';
import { ProxyRequest } from './forwarder.js';
import { scanRequest } from './request-scan.js';
import type { CompiledRoute, Snapshot } from './snapshot.js';
import type { Exchange, ListenerContext, RequestEnv, RoutedRequest, Target } from './exchange.js';
import { replacePrefix } from './route-runtime.js';
import type { DownstreamRequest, DownstreamResponse } from '../listener/downstream.js';

/*
 * The stages every routed request goes through, whether it is a plain request (handle-request.ts)
 * or an Upgrade (upgrade.ts): guard and route, run the route's filters (answering refusals through
 * the same bookkeeping as proxied responses), then build the upstream request's identity headers.
 * Sharing them is what keeps an upgrade from skipping authentication or rate limits.
 */

// One scratch object: it is read synchronously by the caller before anything can run in between.
const target: Target = { authority: '', hostCount: 0, hasBody: false, contentLength: -1, route: undefined, error: undefined, close: false, path: '', query: '' };

/**
 * Guard the request line and headers, find the authority, normalize the path, match a route and
 * apply the worker's overload caps (an `overloaded` refusal keeps its route, for the metrics).
 * The result is valid until the caller yields (it is a shared scratch object).
 */
export function routeRequest(snap: Snapshot, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest): Target {
  const t = target;
  t.route = undefined;
  const limits = snap.config.gateway.limits;
  t.error = guardRequest(req, limits);
  if (t.error) return refused(t, t.error, true);
  scanRequest(req, t);
  if (t.hostCount > 1) return refused(t, 'bad_request', true);
  let url = req.url ?? '/';
  if (url.charCodeAt(0) !== 47 /* '/' */ && (url = absoluteTarget(snap, listener, url, t)) === '') return refused(t, 'bad_request', true);
  // Never forward an authority that is not one (`Host: evil.invalid/../x y`): upstreams, logs and
  // caches take Host at its word (an absolute-form target's authority has replaced it by now).
  if (t.authority === '' || !isValidAuthority(t.authority)) return refused(t, 'bad_request', true);
  const q = url.indexOf('?');
  const path = env.normalize(q === -1 ? url : url.slice(0, q));
  if (path === null) return refused(t, 'bad_request', false);
  t.path = path;
  t.query = q === -1 ? '' : url.slice(q);
  t.route = snap.tables.get(listener.name)?.match(hostOf(t.authority), path, req.method ?? 'GET', req, t.query);
  if (!t.route) return refused(t, 'no_route', false);
  // TRACE echoes the request (credentials included) back: only a route that names it may see it.
  if (req.method === 'TRACE' && !t.route.allowsTrace) return refused(t, 'method_not_allowed', false);
  if (env.shedding || (limits.maxInFlightRequests && env.inFlight >= limits.maxInFlightRequests)) return refused(t, 'overloaded', false);
  return t;
}

/**
 * An absolute-form target (`GET http://api.example.com/x HTTP/1.1`, HTTP/1.x only). RFC 9112 3.2.2:
 * its authority replaces Host. It is accepted only for an authority this listener serves: a host one
 * of its routes names (exact or `*.suffix`; host-less and `*` routes do not count), or the request's
 * own Host header. The gateway never connects to the URI's authority (routes pick the upstream), so
 * this is not a forward proxy. Sets `t.authority` and returns the origin-form target (path and
 * query, "/" when empty), or '' to refuse with 400.
 */
function absoluteTarget(snap: Snapshot, listener: ListenerContext, url: string, t: Target): string {
  const sep = url.indexOf('://');
  if (sep !== 4 && sep !== 5) return '';
  const scheme = url.slice(0, sep).toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return '';
  const from = sep + 3;
  let end = from;
  while (end < url.length && url.charCodeAt(end) !== 47 /* '/' */ && url.charCodeAt(end) !== 63 /* '?' */) end++;
  const authority = url.slice(from, end);
  if (!isValidAuthority(authority)) return '';
  if (authority.toLowerCase() !== t.authority.toLowerCase() && !snap.servesHost(listener.name, hostOf(authority))) return '';
  t.authority = authority;
  if (end === url.length) return '/';
  return url.charCodeAt(end) === 47 ? url.slice(end) : `/${url.slice(end)}`;
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
  // HTTP/2 has no absolute-form (:authority is separate); HTTP/1 targets are checked by routeRequest.
  if (url.charCodeAt(0) !== 47 /* '/' */ && req.httpVersionMajor !== 1) return 'bad_request';
  if (req.rawHeaders.length > limits.maxHeaders * 2) return 'headers_too_large';
  return undefined;
}

/**
 * The routed request of a Target (call before anything yields: the target is scratch): what the
 * stages after routing read.
 */
export function routed(snap: Snapshot, listener: ListenerContext, env: RequestEnv, req: DownstreamRequest, t: Target): RoutedRequest {
  return { snap, route: t.route!, listener, env, req, path: t.path, query: t.query, authority: t.authority, hasBody: t.hasBody };
}

/** Build the exchange of a routed request whose route has filters. */
export function newExchange(r: RoutedRequest, res: DownstreamResponse | undefined, socket?: Duplex): Exchange {
  const { snap, req, listener } = r;
  const trust = snap.config.gateway.trustForwardedHeaders;
  const id = clientRequestId(req);
  return {
    method: req.method ?? 'GET', path: r.path, query: r.query, authority: r.authority, headers: req.headers, clientIp: clientIp(req, trust),
    peer: listener.peerOf(req), routeName: r.route.name, requestId: id === '' ? randomUUID() : id, upstreamHeaders: [], upstreamStrip: [],
    upstreamStripCookies: undefined, upstreamStripQuery: undefined, responseHeaders: [],
    snap, route: r.route, listener, env: r.env, req, hasBody: r.hasBody, res, socket,
  };
}

/**
 * The client's x-request-id, or ''. An exchange (filters) gets a new one when absent, so the
 * filters' logs and the access log agree; a forwarded request gets one with its upstream headers.
 */
export function clientRequestId(req: DownstreamRequest): string {
  const id = req.headers['x-request-id'];
  return typeof id === 'string' ? id : '';
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
  if (res) ProxyRequest.answer(x.req, res, x.env, { route: x.route, requestId: x.requestId, code: r.code, headers: r.headers, body: r.body });
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
export function forwardFacts(r: RoutedRequest): ForwardFacts {
  const g = r.snap.config.gateway;
  return {
    clientIp: peerIp(r.req), proto: r.listener.proto, authority: r.route.rewriteHost ?? r.authority, trustForwarded: g.trustForwardedHeaders,
    rejectUnderscores: g.rejectUnderscoreHeaders, upgrade: false, identity: r.snap.identityHeaders, requestId: undefined, traceparent: undefined,
  };
}

/**
 * Headers the gateway vouches for (the client's copies were stripped by buildUpstreamHeaders):
 * request id and traceparent (when the client sent none), what the filters learned (forwarded
 * claims, API-key consumer) minus the credentials they consumed, `x-real-ip` (the client IP after
 * trusted-proxy handling), and from a verified client certificate `x-spiffe-id` and, when the
 * listener forwards it, `x-forwarded-client-cert`.
 */
export function addIdentityHeaders(headers: string[], facts: ForwardFacts, r: RoutedRequest, x: Exchange | undefined, ip: string): void {
  const { listener } = r;
  if (facts.requestId === undefined) headers.push('x-request-id', (facts.requestId = x?.requestId ?? randomUUID()));
  if (facts.traceparent === undefined) headers.push('traceparent', newTraceparent());
  if (x) {
    // Credentials the filters consumed (an API key, a bearer token, a token cookie) do not go upstream.
    if (x.upstreamStrip.length) removeHeaders(headers, x.upstreamStrip);
    if (x.upstreamStripCookies) stripCookies(headers, x.upstreamStripCookies);
    for (let i = 0; i < x.upstreamHeaders.length; i++) headers.push(x.upstreamHeaders[i]);
  }
  headers.push('x-real-ip', ip);
  const peer = x ? x.peer : listener.peerOf(r.req);
  if (peer) {
    if (peer.spiffeId !== undefined) headers.push('x-spiffe-id', peer.spiffeId);
    if (listener.forwardClientCert) headers.push('x-forwarded-client-cert', r.env.xfcc(peer));
  }
}

/** Remove the named cookies from every Cookie header of a flat list (dropping a header left empty). */
function stripCookies(headers: string[], names: readonly string[]): void {
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    let value = headers[r + 1];
    if (headers[r].length === 6 && headers[r].toLowerCase() === 'cookie' && (value = withoutCookies(value, names)) === '') continue;
    headers[w++] = headers[r];
    headers[w++] = value;
  }
  headers.length = w;
}

/** The query to forward: without the query parameters a filter consumed as credentials. */
export function upstreamQuery(x: Exchange | undefined, query: string): string {
  return x?.upstreamStripQuery && query !== '' ? withoutQueryParams(query, x.upstreamStripQuery) : query;
}

/** W3C trace context for a request that arrived without one: a new trace, sampled. */
function newTraceparent(): string {
  return `00-${randomHex(16)}-${randomHex(8)}-01`;
}

/** The upstream path: the normalized path (the one routing and RBAC judged) with the route's rewrite. */
export function upstreamPath(route: CompiledRoute, path: string, query: string): string {
  if (route.rewritePath !== undefined) return route.rewritePath + query;
  return (route.rewritePrefix ? replacePrefix(route.rewritePrefix, path) : path) + query;
}
