import { describe, it, expect } from 'vitest';
import type { RetryPolicy } from '../../../src/proxy/route-runtime.js';
import { retriableError, retriableResponse } from '../../../src/proxy/retry-policy.js';

const policy = (o: Partial<RetryPolicy>): RetryPolicy => ({
  attempts: 1,
  onConnectFailure: false,
  onReset: false,
  on5xx: false,
  onGatewayError: false,
  statusCodes: new Set(),
  grpcCodes: new Set(),
  perTryTimeoutMs: 0,
  bufferBytes: 0,
  baseMs: 25,
  maxMs: 250,
  ...o,
});

describe('retry policy (Envoy retry_on)', () => {
  it('an attempt without a response: connect-failure, reset (a protocol error counts), a per-try timeout as a 504', () => {
    expect(retriableError(policy({ onConnectFailure: true }), 'upstream_connect_failure')).toBe(true);
    expect(retriableError(policy({ onReset: true }), 'upstream_connect_failure')).toBe(false);
    expect(retriableError(policy({ onReset: true }), 'upstream_reset')).toBe(true);
    expect(retriableError(policy({ onReset: true }), 'upstream_protocol_error')).toBe(true);
    expect(retriableError(policy({ onConnectFailure: true }), 'upstream_reset')).toBe(false);
    expect(retriableError(policy({ on5xx: true }), 'upstream_timeout')).toBe(true);
    expect(retriableError(policy({ onGatewayError: true }), 'upstream_timeout')).toBe(true);
    expect(retriableError(policy({ onReset: true, onConnectFailure: true }), 'upstream_timeout')).toBe(false);
    // Local refusals are never retried, whatever the policy says.
    const all = policy({ onConnectFailure: true, onReset: true, on5xx: true, onGatewayError: true });
    for (const code of ['no_healthy_upstream', 'overloaded', 'payload_too_large', 'request_timeout'] as const)
      expect(retriableError(all, code)).toBe(false);
  });

  it('a response: 5xx takes every 5xx, gateway-error only 502/503/504, retriable-status-codes its list', () => {
    expect([500, 502, 503, 504, 599, 404].map((s) => retriableResponse(policy({ on5xx: true }), s, []))).toEqual([
      true,
      true,
      true,
      true,
      true,
      false,
    ]);
    expect([500, 502, 503, 504, 501].map((s) => retriableResponse(policy({ onGatewayError: true }), s, []))).toEqual([
      false,
      true,
      true,
      true,
      false,
    ]);
    expect([409, 410].map((s) => retriableResponse(policy({ statusCodes: new Set([409]) }), s, []))).toEqual([
      true,
      false,
    ]);
    expect(retriableResponse(policy({}), 503, [])).toBe(false);
  });
});

describe('retriableResponse (gRPC statuses from the headers)', () => {
  it('retries a gRPC status named in the policy, read from the headers', () => {
    const p = policy({ grpcCodes: new Set([14, 4]) });
    expect(retriableResponse(p, 200, ['grpc-status', '14'])).toBe(true);
    expect(retriableResponse(p, 200, ['grpc-status', '4'])).toBe(true);
    expect(retriableResponse(p, 200, ['grpc-status', '5'])).toBe(false);
    expect(retriableResponse(p, 200, ['content-type', 'application/grpc'])).toBe(false);
  });

  it('ignores grpc-status when no gRPC condition is configured', () => {
    expect(retriableResponse(policy({ on5xx: true }), 200, ['grpc-status', '14'])).toBe(false);
    expect(retriableResponse(policy({ on5xx: true }), 503, [])).toBe(true);
    expect(retriableResponse(policy({ onGatewayError: true }), 500, [])).toBe(false);
    expect(retriableResponse(policy({ statusCodes: new Set([409]) }), 409, [])).toBe(true);
  });
});
