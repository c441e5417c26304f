import type { ServerResponse } from 'node:http';
import { constants as h2, type Http2ServerRequest } from 'node:http2';
import { ErrorCodes, type ErrorCode } from '../common/errors.js';
import { downstreamErrors } from '../observability/request-metrics.js';
import type { DownstreamRequest, DownstreamResponse } from '../listener/downstream.js';

/**
 * The one place a gateway-generated error becomes a response: status from the catalogue,
 * `x-meridian-error: <code>`, a short body (`<code>\n` unless a filter chose its own). If the
 * response already started, the stream is reset, because a half-sent body must not look complete
 * to the client.
 */
export function respondError(
  res: DownstreamResponse,
  code: ErrorCode,
  extra?: Record<string, string>,
  closeConnection = false,
  body = `${code}\n`,
): void {
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
  if (closeConnection && 'shouldKeepAlive' in res) {
    headers.connection = 'close';
    if (!res.req.complete) lingerClose(res);
  }
  res.writeHead(ErrorCodes[code], headers);
  res.end(body);
}

/** How long a connection closed mid-body keeps reading and discarding what the client still sends. */
const LINGER_MS = 2000;

/**
 * Close an HTTP/1 connection whose client is still sending a body (refused midway: 413, 408) without
 * losing the answer. Node destroys the socket once the response is flushed, and closing a socket with
 * unread input sends RST, on which the client's kernel drops the response it has not read yet. As
 * nginx's lingering_close: half-close after the response (FIN), discard what still arrives, destroy
 * when the client closes its side or after LINGER_MS.
 */
function lingerClose(res: ServerResponse): void {
  const socket = res.socket;
  if (!socket) return;
  // Node's resOnFinish calls destroySoon() on a `Connection: close` response; for this one socket it
  // only half-closes.
  socket.destroySoon = () => {
    socket.end();
    socket.once('end', () => socket.destroy());
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  };
  // Discard the rest of the body (the forwarder stopped reading it) so the socket keeps draining.
  res.req.resume();
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
