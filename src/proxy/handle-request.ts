import { ProxyRequest } from './forwarder.js';
import { routeRequest, routedOf } from './route.js';
import { newExchange, runRouteFilters, type AfterFilters } from './filter-stage.js';
import { clientRequestId } from './request-facts.js';
import { respondDirect } from './actions/direct.js';
import { respondRedirect } from './actions/redirect.js';
import { forward } from './actions/forward.js';
import type { Snapshot } from './snapshot.js';
import type { DownstreamRequest, DownstreamResponse } from '../listener/downstream.js';
import type { Exchange, ListenerContext, RequestEnv, RoutedRequest } from './exchange.js';

/**
 * The request path of a plain request: guard -> route (route.ts) -> filters (filter-stage.ts) -> action
 * (actions/: direct, redirect, forward) -> upstream (forwarder.ts). Everything here reads the
 * snapshot the request started with; nothing is compiled per request. Every response, the
 * gateway's own included, finishes through a ProxyRequest (counted, access-logged, in flight).
 */
export function handleRequest(
  snap: Snapshot,
  listener: ListenerContext,
  env: RequestEnv,
  req: DownstreamRequest,
  res: DownstreamResponse,
): void {
  const t = routeRequest(snap, listener, env, req);
  if (t.error)
    return ProxyRequest.answer(req, res, env, {
      route: t.route,
      requestId: clientRequestId(req),
      code: t.error,
      close: t.close,
    });
  const route = t.route!;
  if (route.maxBodyBytes && t.contentLength > route.maxBodyBytes)
    return ProxyRequest.answer(req, res, env, {
      route,
      requestId: clientRequestId(req),
      code: 'payload_too_large',
      close: true,
    });
  const r = routedOf(t);
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
