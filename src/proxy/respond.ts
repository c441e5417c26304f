import type { ServerResponse } from 'node:http';
import { constants as h2, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { DownstreamRequest } from './request-scan.js';
import { ErrorCodes, type ErrorCode } from '../common/errors.js';
import { downstreamErrors } from '../observability/request-metrics.js';

export type DownstreamResponse = ServerResponse | Http2ServerResponse;

/**
 * The one place a gateway-generated error becomes a response: status from the catalogue,
 * `x-meridian-error: <code>`, a short body (`<code>\n` unless a filter chose its own). If the
 * response already started, the stream is reset, because a half-sent body must not look complete
 * to the client.
 */
export function respondError(res: DownstreamResponse, code: ErrorCode, extra?: Record<string, string>, closeConnection = false, body = `${code}\n`): void {
  downstreamErrors.labels(code).inc();
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string | number> = {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-meridian-error': code,
    ...extra,
  };
  if (closeConnection && 'shouldKeepAlive' in res) headers.connection = 'close';
  res.writeHead(ErrorCodes[code], headers);
  res.end(body);
}

/**
 * The response is complete but the client is still sending a body nobody will read. HTTP/1: Node
 * discards the rest. HTTP/2: flow control would leave the client's stream open (holding one of its
 * concurrent-stream slots) until the idle timeout, so once the response is flushed the stream is
 * reset with NO_ERROR, as RFC 9113 section 8.1 allows.
 */
export function abandonUnreadBody(req: DownstreamRequest, trailersPending: boolean): void {
  if (req.httpVersionMajor !== 2 || req.complete) return;
  // Trailers go out after the writable side's 'finish': a reset then would cut them (every GET with
  // a trailered response: nobody reads its empty body). Such a stream is left to close by itself,
  // which it does at once when the client already ended its side, as a GET's END_STREAM did.
  if (trailersPending) return;
  const stream = (req as Http2ServerRequest).stream;
  // The stream's own 'finish' (its writable side flushed): the compat response emits 'finish' only
  // once the whole stream closed, which is what never happens here.
  if (stream.writableFinished) stream.close(h2.NGHTTP2_NO_ERROR);
  else stream.once('finish', () => stream.close(h2.NGHTTP2_NO_ERROR));
}
