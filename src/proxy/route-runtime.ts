import type { RouteConfig } from '../config/schema/index.js';
import { msOf } from '../config/duration.js';
import type { ClusterManager, ClusterRuntime } from '../cluster/cluster-manager.js';
import type { Filter } from '../filters/filter.js';
import { compileHeaderOps, NO_HEADER_OPS, type HeaderOps } from './headers.js';
import { routeCounters, routeLatency } from '../observability/request-metrics.js';
import type { MirrorPolicy } from './mirror.js';
import { GRPC_RETRY_ON } from './grpc-status.js';

/** Retry policy compiled from a route's `retry` section. */
export interface RetryPolicy {
  readonly attempts: number;
  readonly onConnectFailure: boolean;
  readonly onReset: boolean;
  readonly on5xx: boolean;
  readonly onGatewayError: boolean;
  readonly statusCodes: ReadonlySet<number>;
  /** gRPC statuses retried when a response's headers carry them (empty: grpc-status is not looked at). */
  readonly grpcCodes: ReadonlySet<number>;
  readonly perTryTimeoutMs: number;
  /** Request bodies up to this size are kept so a retry can send them again (0: only unread bodies). */
  readonly bufferBytes: number;
  readonly baseMs: number;
  readonly maxMs: number;
}

/** Everything the request path needs about one route, compiled once per snapshot. */
export interface RouteRuntime {
  readonly name: string;
  /** The name as a JSON string, for the access log (quoted here, not per line). */
  readonly logName: string;
  readonly config: RouteConfig;
  readonly kind: 'cluster' | 'weighted' | 'redirect' | 'direct';
  readonly cluster: ClusterRuntime | undefined;
  readonly weighted: { clusters: ClusterRuntime[]; cumulative: number[]; total: number } | undefined;
  /** A direct response; `headers` already carries its content-length. */
  readonly direct: { status: number; body: Buffer; headers: Readonly<Record<string, string | number>> } | undefined;
  readonly timeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly retry: RetryPolicy | undefined;
  readonly hedgeDelayMs: number;
  readonly mirror: MirrorPolicy | undefined;
  readonly requestOps: HeaderOps;
  readonly responseOps: HeaderOps;
  readonly rewritePrefix: PrefixRewrite | undefined;
  /** redirect.pathPrefix: the Location's path with the matched prefix replaced. */
  readonly redirectPrefix: PrefixRewrite | undefined;
  /** The whole upstream path (rewrite.path), the query kept. */
  readonly rewritePath: string | undefined;
  readonly rewriteHost: string | undefined;
  readonly maxBodyBytes: number;
  /** The route's `match.methods` names TRACE: refused with 405 everywhere else. */
  readonly allowsTrace: boolean;
  filters: Filter[];
  /** Downstream request counters by status class (index = status / 100). */
  readonly counters: ReturnType<typeof routeCounters>;
  /** Downstream request latency (seconds), observed when the exchange finishes. */
  readonly latency: ReturnType<typeof routeLatency>;
}

/** A prefix replacement: `from` (the route's matched prefix, or its exact path) becomes `to`. */
export interface PrefixRewrite {
  from: string;
  to: string;
}

/** The path with the matched prefix replaced; a path the prefix does not start is returned as it is. */
export function replacePrefix(rw: PrefixRewrite, path: string): string {
  if (!path.startsWith(rw.from)) return path;
  const rest = path.slice(rw.from.length);
  return rw.to.endsWith('/') && rest.startsWith('/') ? rw.to + rest.slice(1) : rw.to + rest;
}

/** Compile one route against the snapshot's clusters. */
export function compileRoute(r: RouteConfig, clusters: ClusterManager, defaultMaxBody: number): RouteRuntime {
  const ms = msOf(r);
  const timeoutMs = ms.timeout;
  return {
    name: r.name,
    logName: JSON.stringify(r.name),
    config: r,
    kind: r.cluster ? 'cluster' : r.weightedClusters ? 'weighted' : r.redirect ? 'redirect' : 'direct',
    cluster: r.cluster ? clusters.get(r.cluster) : undefined,
    weighted: r.weightedClusters ? compileWeighted(r.weightedClusters, clusters) : undefined,
    direct: r.directResponse ? compileDirect(r.directResponse) : undefined,
    timeoutMs,
    idleTimeoutMs: ms.idleTimeout ?? timeoutMs,
    retry: r.retry ? compileRetry(r.retry) : undefined,
    hedgeDelayMs: r.hedge ? msOf(r.hedge).delay : 0,
    mirror: r.mirror
      ? {
          cluster: clusters.get(r.mirror.cluster)!,
          fraction: r.mirror.percent / 100,
          maxBodyBytes: r.mirror.maxBodyBytes,
        }
      : undefined,
    requestOps: compileHeaderOps(r.requestHeaders),
    responseOps: compileHeaderOps(r.responseHeaders),
    // On an exact match the "prefix" is the whole matched path: /foo rewritten with /bar is /bar.
    rewritePrefix:
      r.rewrite?.pathPrefix !== undefined
        ? { from: r.match.path?.prefix ?? r.match.path?.exact ?? '/', to: r.rewrite.pathPrefix }
        : undefined,
    redirectPrefix:
      r.redirect?.pathPrefix !== undefined
        ? { from: r.match.path?.prefix ?? r.match.path?.exact ?? '/', to: r.redirect.pathPrefix }
        : undefined,
    rewritePath: r.rewrite?.path,
    rewriteHost: r.rewrite?.host,
    maxBodyBytes: r.maxBodyBytes ?? defaultMaxBody,
    allowsTrace: r.match.methods?.includes('TRACE') ?? false,
    filters: [],
    counters: routeCounters(r.name),
    latency: routeLatency(r.name),
  };
}

function compileDirect(d: NonNullable<RouteConfig['directResponse']>): NonNullable<RouteRuntime['direct']> {
  const body = Buffer.from(d.body);
  return { status: d.status, body, headers: Object.freeze({ 'content-length': body.length, ...d.headers }) };
}

/**
 * Stands in for the route of a request answered before one was chosen (refused before routing, or
 * no route matched), so it is counted (`route=""`) and access-logged like every other request.
 */
export const UNROUTED: RouteRuntime = Object.freeze({
  name: '',
  logName: '""',
  config: Object.freeze({ name: '', match: {} }) as unknown as RouteConfig,
  kind: 'direct',
  cluster: undefined,
  weighted: undefined,
  direct: undefined,
  timeoutMs: 0,
  idleTimeoutMs: 0,
  retry: undefined,
  hedgeDelayMs: 0,
  mirror: undefined,
  requestOps: NO_HEADER_OPS,
  responseOps: NO_HEADER_OPS,
  rewritePrefix: undefined,
  redirectPrefix: undefined,
  rewritePath: undefined,
  rewriteHost: undefined,
  maxBodyBytes: 0,
  allowsTrace: false,
  filters: [],
  counters: routeCounters(''),
  latency: routeLatency(''),
});

function compileWeighted(list: NonNullable<RouteConfig['weightedClusters']>, clusters: ClusterManager) {
  const out = { clusters: [] as ClusterRuntime[], cumulative: [] as number[], total: 0 };
  for (const w of list) {
    if (w.weight === 0) continue;
    out.total += w.weight;
    out.clusters.push(clusters.get(w.cluster)!);
    out.cumulative.push(out.total);
  }
  return out;
}

function compileRetry(r: NonNullable<RouteConfig['retry']>): RetryPolicy {
  const on = new Set(r.on);
  const backoff = msOf(r.backoff);
  const baseMs = backoff.base;
  return {
    attempts: r.attempts,
    onConnectFailure: on.has('connect-failure') || on.has('5xx') || on.has('gateway-error'),
    onReset: on.has('reset') || on.has('5xx') || on.has('gateway-error'),
    on5xx: on.has('5xx'),
    onGatewayError: on.has('gateway-error'),
    statusCodes: new Set(on.has('retriable-status-codes') ? r.statusCodes : []),
    grpcCodes: new Set(r.on.filter((c) => c in GRPC_RETRY_ON).map((c) => GRPC_RETRY_ON[c])),
    perTryTimeoutMs: msOf(r).perTryTimeout ?? 0,
    // Every gRPC call has a body, so gRPC conditions without a kept body would never retry anything.
    bufferBytes: r.maxBodyBytes ?? r.bufferBytes ?? 65_536,
    baseMs,
    maxMs: backoff.max ?? baseMs * 10,
  };
}

/** Pick the cluster for a request: fixed, or weighted by a uniform draw. */
export function pickCluster(route: RouteRuntime, random: number): ClusterRuntime | undefined {
  if (route.cluster) return route.cluster;
  const w = route.weighted;
  if (!w) return undefined;
  const x = random * w.total;
  for (let i = 0; i < w.cumulative.length; i++) if (x < w.cumulative[i]) return w.clusters[i];
  return w.clusters[w.clusters.length - 1];
}
