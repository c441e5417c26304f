import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
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
