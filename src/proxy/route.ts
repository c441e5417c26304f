import type { ErrorCode } from '../common/errors.js';
import { isValidAuthority } from '../common/address.js';
import { hostOf } from '../router/route-table.js';
import type { DownstreamRequest } from '../listener/downstream.js';
import { guardRequest } from './guard.js';
import { scanRequest } from './request-scan.js';
import type { Snapshot } from './snapshot.js';
import type { ListenerContext, RequestEnv, RoutedRequest, Target } from './exchange.js';

/* The second stage, for plain requests and upgrades alike: guard, find the authority, normalize the path, match a route. */

/**
 * Guard the request line and headers, find the authority, normalize the path, match a route and
 * apply the worker's overload caps (an `overloaded` refusal keeps its route, for the metrics).
 */
export function routeRequest(
  snap: Snapshot,
  listener: ListenerContext,
  env: RequestEnv,
  req: DownstreamRequest,
): Target {
  const t: Target = {
    snap,
    listener,
    env,
    req,
    authority: '',
    hostCount: 0,
    hasBody: false,
    contentLength: -1,
    route: undefined,
    error: undefined,
    close: false,
    path: '',
    query: '',
  };
  const limits = snap.config.gateway.limits;
  t.error = guardRequest(req, limits);
  if (t.error) return refused(t, t.error, true);
  scanRequest(req, t);
  if (t.hostCount > 1) return refused(t, 'bad_request', true);
  let url = req.url ?? '/';
  if (url.charCodeAt(0) !== 47 /* '/' */ && (url = absoluteTarget(snap, listener, url, t)) === '')
    return refused(t, 'bad_request', true);
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
  if (env.shedding || (limits.maxInFlightRequests && env.inFlight >= limits.maxInFlightRequests))
    return refused(t, 'overloaded', false);
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
  if (authority.toLowerCase() !== t.authority.toLowerCase() && !snap.servesHost(listener.name, hostOf(authority)))
    return '';
  t.authority = authority;
  if (end === url.length) return '/';
  return url.charCodeAt(end) === 47 ? url.slice(end) : `/${url.slice(end)}`;
}

function refused(t: Target, code: ErrorCode, close: boolean): Target {
  t.error = code;
  t.close = close;
  return t;
}

/** A Target that routing accepted (no error, a route) is the request's RoutedRequest: no copy is made. */
export function routedOf(t: Target): RoutedRequest {
  return t as RoutedRequest;
}
