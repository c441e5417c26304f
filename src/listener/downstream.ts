import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';

/**
 * A request and its response as the listener's servers hand them to the request path: Node's HTTP/1.1
 * objects or the HTTP/2 compatibility API's. Defined here, where they come from, so the listener
 * imports nothing from the request path (proxy/), which reads them.
 */
export type DownstreamRequest = IncomingMessage | Http2ServerRequest;
export type DownstreamResponse = ServerResponse | Http2ServerResponse;

/**
 * The first value of a header in a request's raw list, `name` in lower case: what reading one header
 * costs without `req.headers`, which Node builds (every header) on first read.
 */
export function firstHeader(raw: readonly string[], name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2)
    if (raw[i].length === name.length && raw[i].toLowerCase() === name) return raw[i + 1];
  return undefined;
}
