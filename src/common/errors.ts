/**
 * The one error catalogue: every failure the gateway answers itself has a code and a status,
 * and is turned into a response in exactly one place (proxy/respond.ts). docs/config.md lists
 * the same codes (test/unit/proxy/error-catalogue.test.ts holds them together). An open circuit
 * breaker answers `overloaded`, as Envoy's overflow does.
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
  rate_limited: 429,
  unauthenticated: 401,
  forbidden: 403,
  bad_request: 400,
  request_timeout: 408,
  payload_too_large: 413,
  uri_too_long: 414,
  headers_too_large: 431,
  method_not_allowed: 405,
  internal_error: 500,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;
