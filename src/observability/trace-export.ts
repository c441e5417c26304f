import { createNoopMeter, type Counter, type Meter, type MeterProvider } from '@opentelemetry/api';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { BatchSpanProcessor, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace';
import type { GatewayConfig } from '../config/schema/index.js';
import { msOf } from '../config/duration.js';
import { counter } from './metrics.js';

/** `gateway.tracing` of a config that has it. */
export type TracingSettings = NonNullable<GatewayConfig['tracing']>;

const spans = counter(
  'meridian_tracing_spans_total',
  'Finished spans by what became of them: exported, dropped (queue_full: the export queue was full) or export_failed',
  ['result'],
);
const exported = spans.labels('exported');
const queueFull = spans.labels('queue_full');
const exportFailed = spans.labels('export_failed');

/** The SDK's self-observability counter of a span processor's finished spans (semantic conventions name). */
const PROCESSED = 'otel.sdk.processor.span.processed';

/**
 * Counts what the BatchSpanProcessor reports about its spans (its self-observability metric, which
 * carries `error.type` = "queue_full" for a span dropped because the queue was full, or the export
 * error's name) into meridian_tracing_spans_total. Every other instrument the SDK asks for is a no-op.
 */
class SpanCountingMeter implements MeterProvider {
  readonly #meter: Meter;

  constructor() {
    const noop = createNoopMeter();
    const processed: Counter = {
      add(n, attributes) {
        const error = attributes?.['error.type'];
        (error === undefined ? exported : error === 'queue_full' ? queueFull : exportFailed).inc(n);
      },
    };
    this.#meter = Object.assign(Object.create(noop) as Meter, {
      createCounter: (name: string) => (name === PROCESSED ? processed : noop.createCounter(name)),
    });
  }

  getMeter(): Meter {
    return this.#meter;
  }
}

/** The OTLP/HTTP exporter of the configured protocol (protobuf or JSON bodies, same URL and headers). */
function otlpExporter(otlp: TracingSettings['otlp']): SpanExporter {
  const options = { url: otlp.endpoint, headers: { ...otlp.headers }, timeoutMillis: msOf(otlp).timeout };
  return otlp.protocol === 'http/json' ? new OtlpJsonExporter(options) : new OtlpProtoExporter(options);
}

/**
 * A worker's span export: one OTLP exporter behind a BatchSpanProcessor, whose bounded queue keeps a
 * down or slow collector off the request path (a full queue drops the span and counts it). It
 * outlives config versions: a version with the same `otlp` section and queue settings keeps it, so a
 * route change loses no queued span; a changed one flushes the old export and starts a new one.
 */
export class TraceExport {
  #key = '';
  #processor: SpanProcessor | undefined;

  /** The span processor for `settings`, or undefined (and the previous export shut down) without tracing. */
  processorFor(settings: TracingSettings | undefined): SpanProcessor | undefined {
    const key = settings ? JSON.stringify([settings.otlp, settings.maxQueueSize, settings.flushInterval]) : '';
    if (key === this.#key) return this.#processor;
    void this.shutdown();
    this.#key = key;
    if (!settings) return undefined;
    const timeoutMs = msOf(settings.otlp).timeout;
    this.#processor = new BatchSpanProcessor({
      exporter: otlpExporter(settings.otlp),
      maxQueueSize: settings.maxQueueSize,
      maxExportBatchSize: Math.min(512, settings.maxQueueSize),
      scheduledDelayMillis: msOf(settings).flushInterval,
      exportTimeoutMillis: timeoutMs,
      selfObsMeterProvider: new SpanCountingMeter(),
    });
    return this.#processor;
  }

  /** Export what is queued (within the export timeout) and stop. */
  async shutdown(): Promise<void> {
    const p = this.#processor;
    this.#processor = undefined;
    this.#key = '';
    await p?.shutdown().catch(() => undefined);
  }
}
