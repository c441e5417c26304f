import { randomUuid } from '../common/random-hex.js';
import { withoutCookies, withoutQueryParams } from '../filters/authn/token-source.js';
import { removeHeaders, type ForwardFacts } from './headers.js';
import { replacePrefix } from './route-runtime.js';
import { peerIp } from './request-facts.js';
import type { CompiledRoute } from './snapshot.js';
import type { Exchange, RoutedRequest } from './exchange.js';

/* What the forward action sends upstream besides the client's own headers: identity headers, the rewritten path and the query. */

/** The per-request facts the upstream header builder needs (one object per forwarded request). */
export function forwardFacts(r: RoutedRequest): ForwardFacts {
  const g = r.snap.config.gateway;
  return {
    clientIp: peerIp(r.req),
    proto: r.listener.proto,
    authority: r.route.rewriteHost ?? r.authority,
    trustForwarded: g.trustForwardedHeaders,
    rejectUnderscores: g.rejectUnderscoreHeaders,
    upgrade: false,
    identity: r.snap.identityHeaders,
    requestId: undefined,
    traceparent: undefined,
  };
}

/**
 * Headers the gateway vouches for (the client's copies were stripped by buildUpstreamHeaders):
 * a request id (when the client sent none), what the filters learned (forwarded
 * claims, API-key consumer) minus the credentials they consumed, `x-real-ip` (the client IP after
 * trusted-proxy handling), and from a verified client certificate `x-spiffe-id` and, when the
 * listener forwards it, `x-forwarded-client-cert`.
 */
export function addIdentityHeaders(
  headers: string[],
  facts: ForwardFacts,
  r: RoutedRequest,
  x: Exchange | undefined,
  ip: string,
): void {
  const { listener } = r;
  if (facts.requestId === undefined) headers.push('x-request-id', (facts.requestId = x?.requestId ?? randomUuid()));
  // No traceparent is made here: without gateway.tracing the client's goes upstream as it came (or
  // none), as in Envoy; with it, RequestTracing.begin writes the context it decided on.
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
    if (
      headers[r].length === 6 &&
      headers[r].toLowerCase() === 'cookie' &&
      (value = withoutCookies(value, names)) === ''
    )
      continue;
    headers[w++] = headers[r];
    headers[w++] = value;
  }
  headers.length = w;
}

/** The query to forward: without the query parameters a filter consumed as credentials. */
export function upstreamQuery(x: Exchange | undefined, query: string): string {
  return x?.upstreamStripQuery && query !== '' ? withoutQueryParams(query, x.upstreamStripQuery) : query;
}

/** The upstream path: the normalized path (the one routing and RBAC judged) with the route's rewrite. */
export function upstreamPath(route: CompiledRoute, path: string, query: string): string {
  if (route.rewritePath !== undefined) return route.rewritePath + query;
  return (route.rewritePrefix ? replacePrefix(route.rewritePrefix, path) : path) + query;
}
