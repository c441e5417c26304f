/**
 * The one error catalogue: every failure the gateway answers itself has a code and a status,
 * and is turned into a response in exactly one place (proxy/respond-error.ts).
 */
export const ErrorCodes = {
  no_route: 404,
  upstream_connect_failure: 502,
  upstream_reset: 502,
  upstream_protocol_error: 502,
  upstream_tls_error: 502,
  upstream_timeout: 504,
  no_healthy_upstream: 503,
  overloaded: 503,
  circuit_open: 503,
  rate_limited: 429,
  unauthenticated: 401,
  forbidden: 403,
  bad_request: 400,
  request_timeout: 408,
  payload_too_large: 413,
  uri_too_long: 414,
  headers_too_large: 431,
  method_not_allowed: 405,
  not_implemented: 501,
  internal_error: 500,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** A failure with a catalogue code; `status` follows from the code. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, message?: string) {
    super(message ?? code);
    this.code = code;
    this.status = ErrorCodes[code];
  }
}
