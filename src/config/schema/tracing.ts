import { Type } from '@sinclair/typebox';
import { Duration, Obj } from './common.js';

/** A head-sampling ratio: the share of new traces recorded (0 = none, 1 = all). */
const SamplingRatio = (opts: { default?: number } = {}) =>
  Type.Number({ minimum: 0, maximum: 1, errorMessage: 'expected a ratio between 0 and 1', ...opts });

/**
 * `gateway.tracing`: OpenTelemetry spans exported over OTLP/HTTP (docs/observability.md). Absent, no
 * tracer exists and the request path does no tracing work.
 */
export const GatewayTracingSchema = Obj({
  otlp: Obj({
    /** The collector's OTLP/HTTP traces URL (port 4318, path /v1/traces). */
    endpoint: Type.String({ pattern: '^https?://', errorMessage: 'expected an http:// or https:// URL' }),
    protocol: Type.Union([Type.Literal('http/protobuf'), Type.Literal('http/json')], {
      default: 'http/protobuf',
      errorMessage: 'expected "http/protobuf" or "http/json"',
    }),
    headers: Type.Record(Type.String(), Type.String(), { default: {} }),
    /** How long one export may take; a slow collector costs spans, never requests. */
    timeout: Duration('2s'),
  }),
  /** Ratio for requests without a sampled parent; a request whose traceparent is sampled is always recorded. */
  sampling: SamplingRatio({ default: 0.01 }),
  /** Finished spans waiting for export, per worker; beyond it new spans are dropped (and counted). */
  maxQueueSize: Type.Integer({ minimum: 1, default: 2048 }),
  /** How often queued spans are sent (a full batch of 512 goes at once). */
  flushInterval: Duration('5s'),
});

/** `routes[].tracing`: the route's own head-sampling ratio, in place of the gateway's. */
export const RouteTracingSchema = Obj({ sampling: SamplingRatio() });
