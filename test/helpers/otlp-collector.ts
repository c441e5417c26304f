import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import protobuf from 'protobufjs';

/** An attribute as OTLP carries it: a key and a one-field value (`{ stringValue: "GET" }`, `{ intValue: "200" }`). */
export interface OtlpAttribute {
  key: string;
  value: Record<string, unknown>;
}

/** One span as the collector received it, the same for both encodings: ids in hex, int64s as strings. */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  /** Absent on a span without a parent. */
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: OtlpAttribute[];
}

export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;

/** A small OTLP/HTTP trace receiver: what it was sent, decoded whichever encoding the exporter chose. */
export interface OtlpCollector {
  url: string;
  /** The content type of every export request, in order. */
  contentTypes: string[];
  spans: OtlpSpan[];
  /** The resource attributes of every ResourceSpans received. */
  resources: OtlpAttribute[][];
  /** Bodies that did not decode (each answered 400): a test expects none. */
  errors: string[];
  close(): Promise<void>;
}

/** A decoded ExportTraceServiceRequest, as far as the tests read it. */
interface ExportRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: Array<{ spans?: Array<Omit<OtlpSpan, 'traceId' | 'spanId' | 'parentSpanId'> & WireIds> }>;
  }>;
}

/** Span ids as decoded: hex strings in OTLP/JSON, bytes in protobuf. */
interface WireIds {
  traceId: string | Uint8Array;
  spanId: string | Uint8Array;
  parentSpanId?: string | Uint8Array;
}

/**
 * ExportTraceServiceRequest from the official OTLP definitions (test/fixtures/otlp-proto, see its
 * README): a protobuf body is decoded with the schema a real collector uses, not by looking for bytes.
 */
const exportTraceServiceRequest = (() => {
  const dir = join(import.meta.dirname, '../fixtures/otlp-proto');
  const root = new protobuf.Root();
  // Imports name paths from the definitions' root ("opentelemetry/proto/common/v1/common.proto").
  root.resolvePath = (_origin, target) => join(dir, target);
  root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto');
  return root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
})();

function decode(contentType: string, body: Buffer): ExportRequest {
  if (contentType === 'application/json') return JSON.parse(body.toString()) as ExportRequest;
  if (contentType !== 'application/x-protobuf') throw new Error(`unexpected content type ${contentType}`);
  const message = exportTraceServiceRequest.decode(body);
  // int64 values as strings and enums as numbers: what OTLP/JSON writes.
  return exportTraceServiceRequest.toObject(message, { longs: String, enums: Number }) as ExportRequest;
}

const hex = (id: string | Uint8Array | undefined) =>
  id === undefined || typeof id === 'string' ? id : Buffer.from(id).toString('hex');

/** Start a collector on 127.0.0.1:0 whose URL is an OTLP/HTTP traces endpoint. */
export async function startOtlpCollector(): Promise<OtlpCollector> {
  const c = { contentTypes: [], spans: [], resources: [], errors: [] } as unknown as OtlpCollector;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const contentType = req.headers['content-type'] ?? '';
      c.contentTypes.push(contentType);
      let doc: ExportRequest;
      try {
        doc = decode(contentType, Buffer.concat(chunks));
      } catch (err) {
        c.errors.push(String(err));
        return void res.writeHead(400).end();
      }
      for (const rs of doc.resourceSpans ?? []) {
        c.resources.push(rs.resource?.attributes ?? []);
        for (const ss of rs.scopeSpans ?? [])
          for (const s of ss.spans ?? [])
            c.spans.push({
              ...s,
              traceId: hex(s.traceId)!,
              spanId: hex(s.spanId)!,
              parentSpanId: hex(s.parentSpanId) || undefined,
              attributes: s.attributes ?? [],
            });
      }
      // An empty ExportTraceServiceResponse: everything accepted.
      if (contentType === 'application/json') res.writeHead(200, { 'content-type': contentType }).end('{}');
      else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  c.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
  c.close = () => new Promise((r) => server.close(() => r()));
  return c;
}

/**
 * A collector that accepts connections and reads requests (counted) but never answers: every export
 * waits for its timeout. Closing it drops the connections it kept.
 */
export async function startHungCollector(): Promise<{ url: string; requests: () => number; close(): Promise<void> }> {
  let requests = 0;
  const server = http.createServer((req) => {
    requests++;
    req.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    requests: () => requests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** An attribute's value as a string (OTLP/JSON writes an int64 as a number or a string). */
export function attr(s: OtlpSpan, key: string): string | undefined {
  return valueOf(s.attributes, key);
}

/** The value of `key` in an attribute list, as a string. */
export function valueOf(attributes: OtlpAttribute[], key: string): string | undefined {
  const v = attributes.find((a) => a.key === key)?.value;
  return v && String(Object.values(v)[0]);
}
