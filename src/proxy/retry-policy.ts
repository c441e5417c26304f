import type { ErrorCode } from '../common/errors.js';
import { grpcStatusIn } from './grpc-status.js';
import type { RetryPolicy } from './route-runtime.js';

/*
 * A route's retry decisions (Envoy's retry_on conditions), apart from the request they apply to. The
 * forwarder also checks what only it knows: attempts left, no response byte sent yet, the body can be
 * sent again, and the cluster's retry budget (circuit breaker).
 */

/**
 * Should this upstream response be retried under the policy? By its HTTP status, or by the
 * grpc-status in its headers (the upstream's raw list), as Envoy's gRPC
 * retry_on conditions read it: from headers only, since trailers come after the body was sent.
 */
export function retriableResponse(p: RetryPolicy, status: number, headers: readonly (Buffer | string)[]): boolean {
  if (p.statusCodes.has(status)) return true;
  if (p.on5xx && status >= 500) return true;
  if (p.onGatewayError && (status === 502 || status === 503 || status === 504)) return true;
  return p.grpcCodes.size > 0 && p.grpcCodes.has(grpcStatusIn(headers));
}

/**
 * Should an attempt that got no response be retried? connect-failure: the connection failed; reset
 * (and a protocol error): it broke mid-request; a per-try timeout counts as a 504 for `5xx` and
 * `gateway-error`, as in Envoy.
 */
export function retriableError(p: RetryPolicy, code: ErrorCode): boolean {
  if (code === 'upstream_connect_failure') return p.onConnectFailure;
  if (code === 'upstream_reset' || code === 'upstream_protocol_error') return p.onReset;
  if (code === 'upstream_timeout') return p.on5xx || p.onGatewayError;
  return false;
}
