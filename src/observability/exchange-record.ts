import { channel } from 'node:diagnostics_channel';
import type { ErrorCode } from '../common/errors.js';
import type { DownstreamRequest, DownstreamResponse } from '../listener/downstream.js';
import type { routeCounters, routeLatency } from './request-metrics.js';

/**
 * What the access log and the request counters read of a finished exchange (proxied, answered by the
 * gateway, or an upgrade's closed tunnel). The request path's ProxyRequest is one; observability reads
 * this record and nothing of the request path.
 */
export interface ExchangeRecord {
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  /** The matched route (name '' when the request was refused before routing), its counters by status class and latency. */
  readonly route: {
    readonly name: string;
    /** The name as a JSON string, quoted when the config was compiled (the access log's field). */
    readonly logName: string;
    readonly counters: ReturnType<typeof routeCounters>;
    readonly latency: ReturnType<typeof routeLatency>;
  };
  /** The cluster chosen; undefined when the gateway answered. */
  readonly cluster: { readonly name: string; readonly logName: string } | undefined;
  /** The upstream host of the attempt whose response went to the client (or the last tried). */
  readonly host: { readonly address: string; readonly logName: string } | undefined;
  readonly requestId: string;
  /** The status sent, when the response object does not carry it (a reset stream). */
  readonly status: number;
  readonly bytesOut: number;
  /** performance.now() when the exchange began. */
  readonly startedAt: number;
  readonly retries: number;
  /** An error the gateway answered, or the client gone before the response ended. */
  readonly error: ExchangeError | undefined;
  /** The spans of a sampled, forwarded request (gateway.tracing: a RequestTrace); undefined otherwise. */
  readonly trace: ExchangeTrace | undefined;
}

/**
 * Why an exchange ended without a complete response: an error the gateway answered (its catalogue
 * code), or `downstream_disconnect`: the client closed the connection or reset the stream first
 * (Envoy's DC response flag). A disconnect before the response began is logged and counted with
 * status 0, as Envoy's %RESPONSE_CODE% is 0 then.
 */
export type ExchangeError = ErrorCode | 'downstream_disconnect';

/**
 * The status an exchange ended with: the response's once its head went out, else the record's (a
 * tunnel's 101, or 0 when the client left before any response began). res.statusCode alone will not
 * do: it is Node's default 200 until a response is written.
 */
export function finalStatus(p: ExchangeRecord): number {
  return p.res.headersSent ? p.res.statusCode : p.status;
}

/**
 * Every finished exchange is published here, as undici publishes its requests: an extension (a
 * custom log, an audit sink) subscribes with `diagnostics_channel.subscribe('meridian:exchange:finish', fn)`
 * in the worker process and reads the ExchangeRecord (with its status). With no subscriber the request
 * path checks one boolean; a subscriber runs on the request path, synchronously, so it must be quick.
 */
export const exchangeFinished = channel('meridian:exchange:finish');

/** What `meridian:exchange:finish` carries. */
export interface FinishedExchange {
  record: ExchangeRecord;
  status: number;
}

/** The spans an exchange carries: ended with the finished record (see observability/tracing.ts). */
export interface ExchangeTrace {
  end(p: ExchangeRecord): void;
}
