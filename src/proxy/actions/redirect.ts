import type { ServerResponse } from 'node:http';
import { ProxyRequest } from '../forwarder.js';
import { replacePrefix } from '../route-runtime.js';
import { clientRequestId } from '../request-facts.js';
import { upstreamQuery } from '../upstream-request.js';
import type { CompiledRoute } from '../snapshot.js';
import type { DownstreamResponse } from '../../listener/downstream.js';
import type { Exchange, RoutedRequest } from '../exchange.js';

/**
 * The Location's authority: without `port`, the given host or the request's authority as it came; with
 * it, the given host or the request's host without its port, then the port unless it is the scheme's
 * default (Gateway API RequestRedirect semantics).
 */
function redirectAuthority(
  r: NonNullable<CompiledRoute['config']['redirect']>,
  scheme: string,
  authority: string,
): string {
  if (r.port === undefined) return r.host ?? authority;
  const host = r.host ?? authority.replace(/:\d+$/, '');
  const isDefault = (scheme === 'http' && r.port === 80) || (scheme === 'https' && r.port === 443);
  return isDefault ? host : `${host}:${r.port}`;
}

export function respondRedirect(
  { route, listener, env, req, authority, path, query }: RoutedRequest,
  res: DownstreamResponse,
  x: Exchange | undefined,
) {
  const r = route.config.redirect!;
  const scheme = r.scheme ?? listener.proto;
  const to = r.path ?? (route.redirectPrefix ? replacePrefix(route.redirectPrefix, path) : path);
  const location = `${scheme}://${redirectAuthority(r, scheme, authority)}${to}${upstreamQuery(x, query)}`;
  (res as ServerResponse).writeHead(r.status, { location, 'content-length': 0 });
  res.end();
  ProxyRequest.answered(req, res, route, env, x?.requestId ?? clientRequestId(req), 0);
}
