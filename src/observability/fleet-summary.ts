import { FLEET_OTHER, FLEET_SERIES_MAX, type TrafficSeries } from '../hub/protocol.js';

/**
 * One metric of a registry's JSON (prom-client getMetricsAsJSON), as the primary aggregates it. A
 * histogram's values name their series (`_bucket` with `le`, `_sum`, `_count`) in `metricName`.
 */
export interface MetricJson {
  name: string;
  values: ReadonlyArray<{ value: number; labels: Partial<Record<string, string | number>>; metricName?: string }>;
}

/** The per-route and per-cluster traffic a hub report carries, cut to `max` series each. */
export interface TrafficSummary {
  routes: TrafficSeries[];
  clusters: ClusterSeries[];
}

/** A cluster's traffic and how many of its endpoints outlier detection holds ejected now. */
export type ClusterSeries = TrafficSeries & { ejected: number };

/**
 * Sum the gateway's request metrics (all endpoints of a cluster into one series) into per-route and
 * per-cluster series with latency buckets of `bounds`, then keep the busiest `max` of each kind.
 *
 * Reads `meridian_downstream_rq_total` and `meridian_downstream_rq_time_seconds` by route (a route's
 * errors: responses sent 5xx) and `meridian_upstream_rq_total` and `meridian_upstream_rq_time_seconds`
 * by cluster (a cluster's errors: attempts answered 5xx or failed without an answer, status class
 * 0xx). Requests that matched no route (route '') are not a route's. `ejected` counts ejected
 * endpoints by cluster.
 */
export function summarizeTraffic(
  metrics: readonly MetricJson[],
  bounds: readonly number[],
  ejected: ReadonlyMap<string, number>,
  max = FLEET_SERIES_MAX,
): TrafficSummary {
  const routes = new SeriesTable(bounds);
  const clusters = new SeriesTable(bounds);
  for (const m of metrics) {
    if (m.name === 'meridian_downstream_rq_total') routes.addCounts(m, 'route', ['5xx']);
    else if (m.name === 'meridian_upstream_rq_total') clusters.addCounts(m, 'cluster', ['5xx', '0xx']);
    else if (m.name === 'meridian_downstream_rq_time_seconds') routes.addHistogram(m, 'route');
    else if (m.name === 'meridian_upstream_rq_time_seconds') clusters.addHistogram(m, 'cluster');
  }
  for (const name of ejected.keys()) clusters.get(name);
  const withEjected = clusters.series().map((c) => ({ ...c, ejected: ejected.get(c.name) ?? 0 }));
  return { routes: foldBeyond(routes.series(), max), clusters: foldBeyond(withEjected, max) };
}

/**
 * The `max` series with the most requests (ties by name, so the cut is stable between reports), and
 * when there are more, one `_other` series summing the rest: with max 2, routes a:10, b:5, c:3, d:1
 * become a:10, b:5, _other:4.
 */
export function foldBeyond<S extends TrafficSeries & { ejected?: number }>(series: S[], max: number): S[] {
  if (series.length <= max) return series;
  const sorted = [...series].sort((a, b) => b.requests - a.requests || (a.name < b.name ? -1 : 1));
  const kept: S[] = [];
  const rest: S[] = [];
  // A route really named `_other` joins the fold: two series of one name would fail the hub's check.
  for (const s of sorted) (kept.length < max && s.name !== FLEET_OTHER ? kept : rest).push(s);
  // Apart from the name, the other series is the field-wise (and bucket-wise) sum of the rest.
  const other = { ...rest[0], name: FLEET_OTHER, buckets: [...rest[0].buckets] };
  for (const s of rest.slice(1)) {
    other.requests += s.requests;
    other.errors += s.errors;
    other.latencySum += s.latencySum;
    if (other.ejected !== undefined) other.ejected += s.ejected ?? 0;
    s.buckets.forEach((n, i) => {
      other.buckets[i] += n;
    });
  }
  return [...kept, other];
}

/** Series by name while a registry's JSON is read; histogram buckets kept cumulative until the end. */
class SeriesTable {
  readonly #bounds: readonly number[];
  readonly #byName = new Map<string, TrafficSeries>();

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
  }

  /** A `{<by>, status_class}` counter: every class counts as requests, `errorClasses` also as errors. */
  addCounts(m: MetricJson, by: string, errorClasses: readonly string[]): void {
    for (const v of m.values) {
      const s = this.get(v.labels[by]);
      if (!s) continue;
      s.requests += v.value;
      if (errorClasses.includes(String(v.labels.status_class))) s.errors += v.value;
    }
  }

  /** A `{<by>, ...}` histogram: `_bucket{le}` (cumulative) and `_sum` values summed per `by`. */
  addHistogram(m: MetricJson, by: string): void {
    for (const v of m.values) {
      const s = this.get(v.labels[by]);
      if (!s) continue;
      if (v.metricName?.endsWith('_sum')) s.latencySum += v.value;
      if (!v.metricName?.endsWith('_bucket')) continue;
      const le = v.labels.le;
      const i = le === '+Inf' ? this.#bounds.length : this.#bounds.indexOf(Number(le));
      if (i >= 0) s.buckets[i] += v.value;
    }
  }

  /** The series, their buckets turned from cumulative counts into counts per bucket. */
  series(): TrafficSeries[] {
    const out = [...this.#byName.values()];
    for (const s of out)
      for (let i = s.buckets.length - 1; i > 0; i--) s.buckets[i] = Math.max(0, s.buckets[i] - s.buckets[i - 1]);
    return out;
  }

  /** The series of `name` (made empty on first use); undefined for a missing or empty name. */
  get(name: string | number | undefined): TrafficSeries | undefined {
    if (typeof name !== 'string' || name === '') return undefined;
    let s = this.#byName.get(name);
    if (!s) {
      s = { name, requests: 0, errors: 0, buckets: new Array(this.#bounds.length + 1).fill(0), latencySum: 0 };
      this.#byName.set(name, s);
    }
    return s;
  }
}
