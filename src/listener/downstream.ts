import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';

/**
 * A request and its response as the listener's servers hand them to the request path: Node's HTTP/1.1
 * objects or the HTTP/2 compatibility API's. Defined here, where they come from, so the listener
 * imports nothing from the request path (proxy/), which reads them.
 */
export type DownstreamRequest = IncomingMessage | Http2ServerRequest;
export type DownstreamResponse = ServerResponse | Http2ServerResponse;
