import { randomUuid } from '../common/random-hex.js';
import type { Duplex } from 'node:stream';
import type { FilterResponse } from '../filters/filter.js';
import { runFilters } from '../filters/chain.js';
import type { DownstreamResponse } from '../listener/downstream.js';
import { ProxyRequest } from './forwarder.js';
import { clientIp, clientRequestId } from './request-facts.js';
import type { Exchange, RoutedRequest } from './exchange.js';

/*
 * The third stage: the route's filters (authentication, RBAC, rate limits), for plain requests and
 * upgrades alike, so an upgrade never skips them. A refusal is answered through the same bookkeeping
 * as a proxied response.
 */

/** Build the exchange of a routed request whose route has filters. */
export function newExchange(r: RoutedRequest, res: DownstreamResponse | undefined, socket?: Duplex): Exchange {
  const { snap, req, listener } = r;
  const trust = snap.config.gateway.trustForwardedHeaders;
  const id = clientRequestId(req);
  return {
    method: req.method ?? 'GET',
    path: r.path,
    query: r.query,
    authority: r.authority,
    headers: req.headers,
    clientIp: clientIp(req, trust),
    peer: listener.peerOf(req),
    routeName: r.route.name,
    requestId: id === '' ? randomUuid() : id,
    upstreamHeaders: [],
    upstreamStrip: [],
    upstreamStripCookies: undefined,
    upstreamStripQuery: undefined,
    responseHeaders: [],
    snap,
    route: r.route,
    listener,
    env: r.env,
    req,
    hasBody: r.hasBody,
    res,
    socket,
  };
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
  result.then(
    (r) => (r ? refuse(x, then, r) : then.pass(x)),
    () => refuse(x, then, FILTER_FAILED),
  );
}

/**
 * Answer a filter's refusal (401, 403, 429, a fail-closed 503). It finishes like a proxied request,
 * so it is counted per route and written to the access log with its error code.
 */
function refuse(x: Exchange, then: AfterFilters, r: FilterResponse): void {
  const res = then.responseFor(x);
  if (res)
    ProxyRequest.answer(x.req, res, x.env, {
      route: x.route,
      requestId: x.requestId,
      code: r.code,
      headers: r.headers,
      body: r.body,
    });
}
