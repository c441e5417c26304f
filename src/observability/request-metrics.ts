import { batchedCounter, counter, gauge, latencyHistogram } from './metrics.js';

/** Metric table of the request path (Envoy-like names). Children are cached per route/host at compile time. */
const downstreamRequests = batchedCounter(
  'meridian_downstream_rq_total',
  'Downstream requests by route and status class',
  ['route', 'status_class'],
);
export const downstreamErrors = counter(
  'meridian_downstream_errors_total',
  'Gateway-generated error responses by code',
  ['code'],
);
const upstreamRequests = batchedCounter(
  'meridian_upstream_rq_total',
  'Upstream requests by cluster, endpoint and status class',
  ['cluster', 'endpoint', 'status_class'],
);
/** Upper bounds (seconds) of the request latency buckets, downstream and upstream alike. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const downstreamLatency = latencyHistogram(
  'meridian_downstream_rq_time_seconds',
  'Downstream request time, from the first byte in to the response finished, by route',
  ['route'],
  LATENCY_BUCKETS,
);
const upstreamLatency = latencyHistogram(
  'meridian_upstream_rq_time_seconds',
  'Upstream request time to completion',
  ['cluster', 'endpoint'],
  LATENCY_BUCKETS,
);
export const activeConnections = gauge('meridian_downstream_cx_active', 'Open downstream connections', ['listener']);
export const configVersion = gauge('meridian_config_version', 'Config version applied by this process', [], 'max');
export const configApplyFailures = counter(
  'meridian_config_apply_failures_total',
  'Config snapshots that failed to apply',
);

const CLASSES = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'];

/** Per-route counters, one child per status class, resolved once so the hot path only increments. */
export function routeCounters(route: string) {
  return CLASSES.map((c) => downstreamRequests(route, c));
}

/** A route's latency histogram child, resolved once per compiled route like its counters. */
export function routeLatency(route: string) {
  return downstreamLatency.labels(route);
}

/**
 * Per-host upstream counters (by status class) and latency histogram child, resolved on first use:
 * a cluster of 100,000 endpoints must not cost 100,000 sets of children (~2.5 KiB each) before any of
 * them carries a request. The object itself is made per host; a request reads the cached children.
 */
export function hostMetrics(cluster: string, endpoint: string): HostMetrics {
  return new HostMetrics(cluster, endpoint);
}

export class HostMetrics {
  readonly #cluster: string;
  readonly #endpoint: string;
  #byClass: ReturnType<typeof upstreamRequests>[] | undefined;
  #latency: ReturnType<typeof upstreamLatency.labels> | undefined;

  constructor(cluster: string, endpoint: string) {
    this.#cluster = cluster;
    this.#endpoint = endpoint;
  }

  get byClass(): ReturnType<typeof upstreamRequests>[] {
    return (this.#byClass ??= CLASSES.map((c) => upstreamRequests(this.#cluster, this.#endpoint, c)));
  }

  get latency(): ReturnType<typeof upstreamLatency.labels> {
    return (this.#latency ??= upstreamLatency.labels(this.#cluster, this.#endpoint));
  }
}

/**
 * Drop the series of routes and endpoints a new config no longer has (keys `cluster\u0000address`), so
 * endpoint churn does not grow /metrics without bound. Requests still in flight on the old snapshot
 * count into detached children: their last few counts are not reported.
 */
export function retainSeries(routes: ReadonlySet<string>, endpoints: ReadonlySet<string>): void {
  downstreamRequests.retain(([route]) => route === '' || routes.has(route));
  downstreamLatency.retain(([route]) => route === '' || routes.has(route));
  upstreamRequests.retain(([cluster, endpoint]) => endpoints.has(`${cluster}\u0000${endpoint}`));
  upstreamLatency.retain(([cluster, endpoint]) => endpoints.has(`${cluster}\u0000${endpoint}`));
}

/** Forget the series of endpoints an endpoint delta removed: cluster -> addresses. */
export function dropEndpointSeries(removed: ReadonlyMap<string, ReadonlySet<string>>): void {
  if (removed.size === 0) return;
  const gone = ([cluster, endpoint]: readonly string[]) => removed.get(cluster)?.has(endpoint) === true;
  upstreamRequests.retain((labels) => !gone(labels));
  upstreamLatency.retain((labels) => !gone(labels));
}
