import { flatToObject } from '../headers.js';
import { ProxyRequest } from '../forwarder.js';
import { clientRequestId } from '../request-facts.js';
import type { DownstreamResponse } from '../../listener/downstream.js';
import type { Exchange, RoutedRequest } from '../exchange.js';

/** The direct-response action: the route's compiled status, headers and body (plus the filters' response headers). */
export function respondDirect({ route, env, req }: RoutedRequest, res: DownstreamResponse, x: Exchange | undefined) {
  const d = route.direct!;
  // Filters' response headers (rate-limit headers) need a copy; otherwise the compiled headers serve as is.
  res.writeHead(d.status, x?.responseHeaders.length ? { ...d.headers, ...flatToObject(x.responseHeaders) } : d.headers);
  res.end(d.body);
  ProxyRequest.answered(req, res, route, env, x?.requestId ?? clientRequestId(req), d.body.length);
}
