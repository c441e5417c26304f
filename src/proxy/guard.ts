import type { ErrorCode } from '../common/errors.js';
import type { DownstreamRequest } from '../listener/downstream.js';
import type { Snapshot } from './snapshot.js';

/**
 * The first stage: refuse what no route may see (an HTTP/0.9 line, CONNECT, an over-long target, an
 * HTTP/2 target not in origin form, too many headers) before anything is parsed further.
 */
export function guardRequest(
  req: DownstreamRequest,
  limits: Snapshot['config']['gateway']['limits'],
): ErrorCode | undefined {
  // Node's parser accepts HTTP/0.9-style request lines and keeps parsing headers: refuse them.
  if (req.httpVersionMajor < 1) return 'bad_request';
  if (req.method === 'CONNECT') return 'method_not_allowed';
  const url = req.url ?? '';
  if (url.length > limits.maxUriLength) return 'uri_too_long';
  // HTTP/2 has no absolute-form (:authority is separate); HTTP/1 targets are checked by routeRequest.
  if (url.charCodeAt(0) !== 47 /* '/' */ && req.httpVersionMajor !== 1) return 'bad_request';
  if (req.rawHeaders.length > limits.maxHeaders * 2) return 'headers_too_large';
  return undefined;
}
