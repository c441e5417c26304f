import {
  type Attributes,
  type Context,
  defaultTextMapGetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, ParentBasedSampler, type SpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { randomHex } from '../common/random-hex.js';
import { firstHeader } from '../listener/downstream.js';
import type { Config, RouteConfig } from '../config/schema/index.js';
import { finalStatus, type ExchangeRecord, type ExchangeTrace } from './exchange-record.js';

/*
 * OpenTelemetry spans of the request path: a SERVER span per downstream request and a CLIENT span per
 * upstream attempt (retries and hedges are sibling CLIENT spans under the SERVER span), with the HTTP
 * semantic conventions. Compiled once per config version (RequestTracing); a request that is not
 * sampled costs its parent's extraction and one traceparent write, nothing more.
 */

const propagator = new W3CTraceContextPropagator();

/** What a CLIENT span reads of the upstream host of an attempt (an UpstreamHost is one). */
export interface TracedHost {
  readonly address: string;
  readonly hostname: string;
  readonly port: number;
  /** The static cluster of the endpoint. */
  readonly cluster: string;
  readonly locality: { readonly region: string; readonly zone: string; readonly subzone: string };
}

/** An upstream attempt as tracing sees it: its host, and the CLIENT span it gets. */
export interface TracedAttempt {
  readonly host: TracedHost;
  span: ClientSpan | undefined;
}

/** Dispatch options as tracing touches them: the flat upstream header list. */
interface WithHeaders {
  headers?: unknown;
}

/** A route's tracer (its sampler) and its `http.route` (the path template it matches). */
interface RouteTracer {
  readonly tracer: Tracer;
  /** The head-sampling ratio of new traces (decided before the SDK is asked: see RequestTracing.begin). */
  readonly ratio: number;
  readonly httpRoute: string | undefined;
}

/**
 * The tracing of one config version: a tracer per route (each with the route's head sampler, or the
 * gateway's), all feeding the worker's one span processor (TraceExport). Built when a snapshot is
 * compiled, never per request.
 */
export class RequestTracing {
  readonly #routes = new Map<string, RouteTracer>();
  readonly #default: RouteTracer;

  constructor(config: Config, processor: SpanProcessor) {
    const settings = config.gateway.tracing!;
    const resource = defaultResource().merge(resourceFromAttributes({ 'service.name': config.gateway.name }));
    // One provider per distinct ratio: the sampler is a provider's, and most routes share the gateway's.
    const byRatio = new Map<number, Tracer>();
    const tracerFor = (ratio: number) => {
      let t = byRatio.get(ratio);
      if (!t) {
        // The ratio for new traces is applied before a span is started (begin, answered): the SDK
        // only sees requests that will be recorded, or whose parent decides.
        const sampler = new ParentBasedSampler({ root: new AlwaysOnSampler() });
        const provider = new TracerProvider({ resource, sampler, spanProcessors: [processor] });
        byRatio.set(ratio, (t = provider.getTracer('meridian')));
      }
      return t;
    };
    this.#default = { tracer: tracerFor(settings.sampling), ratio: settings.sampling, httpRoute: undefined };
    for (const r of config.routes) {
      const ratio = r.tracing?.sampling ?? settings.sampling;
      this.#routes.set(r.name, { tracer: tracerFor(ratio), ratio, httpRoute: pathTemplate(r) });
    }
  }

  /**
   * Start the SERVER span of a request about to be forwarded, parented on its incoming `traceparent`
   * (else a new trace), and return its trace. The upstream headers get the span's context in place of
   * the client's traceparent, or in a new one. Undefined when the request is not sampled: its
   * traceparent then carries the unsampled context and no span is made at all.
   */
  begin(p: ExchangeRecord, headers: string[], clientTraceparent: string | undefined): RequestTrace | undefined {
    const rt = this.#routes.get(p.route.name) ?? this.#default;
    const at = traceparentIndex(headers);
    // Requests that will not be recorded cost a string check, not an SDK span (most of them at 1 %).
    const incoming = validTraceparent(clientTraceparent);
    if (incoming === undefined && Math.random() >= rt.ratio) {
      // A new context, not sampled (a client's malformed one is replaced): the services behind the
      // gateway share one trace id for the request without recording it.
      headers[at] = unsampledTraceparent();
      return undefined;
    }
    // A caller that decided "not sampled": its context goes upstream as it came.
    if (incoming !== undefined && !incoming.endsWith('1')) return undefined;
    const parent = incoming
      ? propagator.extract(
          ROOT_CONTEXT,
          { traceparent: incoming, tracestate: p.req.headers.tracestate },
          defaultTextMapGetter,
        )
      : ROOT_CONTEXT;
    const span = startServerSpan(rt, p, parent);
    if (!span.isRecording()) {
      headers[at] = traceparentOf(span);
      return undefined;
    }
    return new RequestTrace(rt.tracer, span, trace.setSpan(parent, span), at);
  }

  /** A request the gateway answered without an upstream (a refusal, a direct response): its SERVER span, whole. */
  answered(p: ExchangeRecord): void {
    const rt = this.#routes.get(p.route.name) ?? this.#default;
    const incoming = validTraceparent(firstHeader(p.req.rawHeaders, 'traceparent'));
    if (incoming === undefined ? Math.random() >= rt.ratio : !incoming.endsWith('1')) return;
    const parent = incoming ? propagator.extract(ROOT_CONTEXT, p.req.headers, defaultTextMapGetter) : ROOT_CONTEXT;
    const span = startServerSpan(rt, p, parent);
    if (span.isRecording()) endServerSpan(span, p);
  }
}

/** The spans of one sampled, forwarded request: its SERVER span and a CLIENT span per attempt. */
export class RequestTrace implements ExchangeTrace {
  readonly #tracer: Tracer;
  readonly #server: Span;
  /** The context of the SERVER span: the parent of every CLIENT span. */
  readonly #context: Context;
  /** Where the traceparent value sits in the upstream header list. */
  readonly #at: number;

  constructor(tracer: Tracer, server: Span, context: Context, at: number) {
    this.#tracer = tracer;
    this.#server = server;
    this.#context = context;
    this.#at = at;
  }

  /**
   * Start the CLIENT span of attempt `a` (the `retries`-th retry, or a hedge racing another attempt)
   * and return the dispatch options carrying its traceparent. A hedge gets its own copy of the options:
   * the racing attempt may still be queued in its pool and read the shared header list later.
   */
  attempt<O extends WithHeaders>(a: TracedAttempt, opts: O, retries: number, hedge: boolean): O {
    const h = a.host;
    const attributes: Attributes = {
      'http.request.method': (opts as { method?: string }).method,
      'server.address': h.hostname,
      'server.port': h.port,
      'network.peer.address': h.hostname,
      'meridian.cluster': h.cluster,
      'meridian.endpoint': h.address,
    };
    if (h.locality.region) attributes['meridian.locality.region'] = h.locality.region;
    if (h.locality.zone) attributes['meridian.locality.zone'] = h.locality.zone;
    if (h.locality.subzone) attributes['meridian.locality.subzone'] = h.locality.subzone;
    if (retries > 0 && !hedge) attributes['http.request.resend_count'] = retries;
    if (hedge) attributes['meridian.hedge'] = true;
    const span = this.#tracer.startSpan(
      String(attributes['http.request.method'] ?? 'HTTP'),
      { kind: SpanKind.CLIENT, attributes },
      this.#context,
    );
    a.span = new ClientSpan(span);
    const headers = hedge ? [...(opts.headers as string[])] : (opts.headers as string[]);
    headers[this.#at] = traceparentOf(span);
    return hedge ? { ...opts, headers } : opts;
  }

  /** The request finished (env.onFinish): end the SERVER span with its outcome. */
  end(p: ExchangeRecord): void {
    endServerSpan(this.#server, p);
  }
}

/** The CLIENT span of one upstream attempt, ended when the attempt is (completed, failed or cancelled). */
export class ClientSpan {
  readonly #span: Span;

  constructor(span: Span) {
    this.#span = span;
  }

  /** `status`: the upstream's (0 when none came); `errorType`: why the attempt failed, if it did. */
  end(status: number, errorType: string | undefined): void {
    const s = this.#span;
    if (status > 0) s.setAttribute('http.response.status_code', status);
    // Semantic conventions: a CLIENT span fails on 4xx and 5xx, and error.type names the status then.
    const error = errorType ?? (status >= 400 ? String(status) : undefined);
    if (error !== undefined) {
      s.setAttribute('error.type', error);
      s.setStatus({ code: SpanStatusCode.ERROR });
    }
    s.end();
  }
}

/** The SERVER span of `p`, from when its exchange began; not recording when the sampler said no. */
function startServerSpan(rt: RouteTracer, p: ExchangeRecord, parent: Context): Span {
  return rt.tracer.startSpan(
    spanName(p.req.method, rt.httpRoute),
    { kind: SpanKind.SERVER, attributes: serverAttributes(p, rt.httpRoute), startTime: p.startedAt },
    parent,
  );
}

function endServerSpan(span: Span, p: ExchangeRecord): void {
  const status = finalStatus(p);
  if (status > 0) span.setAttribute('http.response.status_code', status);
  if (p.cluster) span.setAttribute('meridian.cluster', p.cluster.name);
  if (p.host) span.setAttribute('meridian.endpoint', p.host.address);
  if (p.retries > 0) span.setAttribute('meridian.retries', p.retries);
  // A SERVER span fails on 5xx only: a 4xx is the client's error, not the gateway's.
  if (p.error !== undefined) span.setAttribute('error.type', p.error);
  if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

function serverAttributes(p: ExchangeRecord, httpRoute: string | undefined): Attributes {
  const req = p.req;
  const socket = req.socket as { remoteAddress?: string; encrypted?: boolean } | undefined;
  const attributes: Attributes = {
    'http.request.method': req.method,
    'url.path': pathOf(req.url ?? ''),
    'url.scheme': socket?.encrypted ? 'https' : 'http',
    'network.protocol.version': req.httpVersion,
    'client.address': socket?.remoteAddress,
    'meridian.request_id': p.requestId || undefined,
  };
  const authority = req.headers[':authority'] ?? req.headers.host;
  if (typeof authority === 'string') attributes['server.address'] = authority;
  if (httpRoute !== undefined) attributes['http.route'] = httpRoute;
  if (p.route.name) attributes['meridian.route'] = p.route.name;
  return attributes;
}

/** `{method} {http.route}` (semantic conventions), the method alone without a route template. */
function spanName(method: string | undefined, httpRoute: string | undefined): string {
  const m = method ?? 'HTTP';
  return httpRoute === undefined ? m : `${m} ${httpRoute}`;
}

/** The route's path template for `http.route`: its exact path, its prefix (as "prefix*") or its regex. */
function pathTemplate(r: RouteConfig): string | undefined {
  const path = r.match.path;
  if (!path) return undefined;
  if (path.exact !== undefined) return path.exact;
  if (path.prefix !== undefined) return path.prefix.endsWith('*') ? path.prefix : `${path.prefix}*`;
  return path.regex;
}

/** The path without its query (queries can carry credentials; they are not recorded). */
function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/** W3C traceparent of a span's context (version 00). */
const TRACEPARENT = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;

/** A client's traceparent when it is a valid version-00 one (flags' last bit: sampled), else undefined. */
function validTraceparent(value: string | undefined): string | undefined {
  return value !== undefined && TRACEPARENT.test(value) ? value : undefined;
}

/** A new trace's context, not sampled: upstream services see the decision and do not record it either. */
function unsampledTraceparent(): string {
  return `00-${randomHex(16)}-${randomHex(8)}-00`;
}

function traceparentOf(span: Span): string {
  const c = span.spanContext();
  return `00-${c.traceId}-${c.spanId}-0${c.traceFlags & 1}`;
}

/** The index of the traceparent value in a flat upstream header list: the client's, else a new entry. */
function traceparentIndex(headers: string[]): number {
  for (let i = 0; i < headers.length; i += 2)
    if (headers[i].length === 11 && headers[i].toLowerCase() === 'traceparent') return i + 1;
  headers.push('traceparent', '');
  return headers.length - 1;
}
