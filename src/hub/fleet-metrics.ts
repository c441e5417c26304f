import { Registry } from 'prom-client';
import type { Locality } from '../cluster/host.js';
import type { ConfigError } from '../config/validate.js';
import type { FleetSummary, TrafficSeries } from './protocol.js';

/** A summary is dropped when not refreshed for this many of its gateway's report intervals... */
const STALE_INTERVALS = 3;
/** ...and never sooner than this: a slow metrics gather or one lost report is not an outage. */
const STALE_MIN_MS = 10000;

/** One gateway's last summary as the hub holds it. */
export interface FleetEntry {
  gateway: string;
  /** The gateway process's replica id ('' when it sends none): replicas of one gateway id count apart. */
  replica: string;
  locality: Locality;
  summary: FleetSummary;
  /** Date.now() when the report carrying it arrived. */
  receivedAt: number;
}

/** Whether a summary received at `receivedAt` is too old to stand for its gateway at `now`. */
export function isStale(e: Pick<FleetEntry, 'summary' | 'receivedAt'>, now: number): boolean {
  return now - e.receivedAt > Math.max(STALE_INTERVALS * e.summary.intervalSeconds * 1000, STALE_MIN_MS);
}

/**
 * What the schema cannot say of a summary (ReportSchema checks types, sizes and finiteness): bounds
 * ascending, one bucket count per bound plus the one above them all, and no name twice in a kind
 * (two series with one label set would make the whole scrape fail).
 */
export function summaryErrors(s: FleetSummary): ConfigError[] {
  const errors: ConfigError[] = [];
  if (s.bounds.some((b, i) => i > 0 && b <= s.bounds[i - 1]))
    errors.push({ path: 'summary.bounds', message: 'expected strictly ascending bucket bounds' });
  for (const kind of ['routes', 'clusters'] as const) {
    const seen = new Set<string>();
    s[kind].forEach((series: TrafficSeries, i) => {
      if (series.buckets.length !== s.bounds.length + 1)
        errors.push({
          path: `summary.${kind}[${i}].buckets`,
          message: `expected ${s.bounds.length + 1} bucket counts (one per bound and one above them), got ${series.buckets.length}`,
        });
      if (seen.has(series.name))
        errors.push({ path: `summary.${kind}[${i}].name`, message: `"${series.name}" appears twice` });
      seen.add(series.name);
    });
  }
  return errors;
}

type Labels = Record<string, string | number>;
type Value = { value: number; labels: Labels; metricName?: string };

/** One metric family of the fleet endpoint, its values read from the entries when scraped. */
interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  values(entries: readonly FleetEntry[]): Value[];
}

const gatewayLabels = (e: FleetEntry): Labels => ({
  gateway: e.gateway,
  replica: e.replica,
  region: e.locality.region,
  zone: e.locality.zone,
});

/** A counter of every route (or cluster) series of every gateway. */
function seriesCounter(kind: 'route' | 'cluster', field: 'requests' | 'errors', help: string): Family {
  return {
    name: `meridian_fleet_${kind}_${field}_total`,
    help,
    type: 'counter',
    values: (entries) =>
      entries.flatMap((e) =>
        e.summary[`${kind}s`].map((s) => ({ value: s[field], labels: { ...gatewayLabels(e), [kind]: s.name } })),
      ),
  };
}

/** The latency histogram of every route (or cluster) series: `_bucket{le}` cumulative, `_sum`, `_count`. */
function seriesHistogram(kind: 'route' | 'cluster', help: string): Family {
  const name = `meridian_fleet_${kind}_request_duration_seconds`;
  return {
    name,
    help,
    type: 'histogram',
    values: (entries) =>
      entries.flatMap((e) =>
        e.summary[`${kind}s`].flatMap((s) => {
          const labels = { ...gatewayLabels(e), [kind]: s.name };
          const out: Value[] = [];
          let cumulative = 0;
          s.buckets.forEach((n, i) => {
            cumulative += n;
            const le = i < e.summary.bounds.length ? e.summary.bounds[i] : '+Inf';
            out.push({ value: cumulative, labels: { ...labels, le }, metricName: `${name}_bucket` });
          });
          out.push({ value: s.latencySum, labels, metricName: `${name}_sum` });
          out.push({ value: cumulative, labels, metricName: `${name}_count` });
          return out;
        }),
      ),
  };
}

/** A gauge with one value per gateway, absent for gateways whose summary lacks the field. */
function gatewayGauge(name: string, help: string, field: 'snapshotVersion' | 'svidExpiry'): Family {
  return {
    name,
    help,
    type: 'gauge',
    values: (entries) =>
      entries.flatMap((e) => {
        const value = e.summary[field];
        return value === undefined ? [] : [{ value, labels: gatewayLabels(e) }];
      }),
  };
}

/** The families of GET /fleet/metrics (docs/observability.md lists them). */
const FAMILIES: readonly Family[] = [
  seriesCounter('route', 'requests', 'Requests per route since the gateway started'),
  seriesCounter('route', 'errors', 'Requests per route answered 5xx (by the upstream or the gateway)'),
  seriesHistogram('route', 'Downstream request latency per route'),
  seriesCounter('cluster', 'requests', 'Upstream attempts per cluster since the gateway started'),
  seriesCounter('cluster', 'errors', 'Upstream attempts per cluster answered 5xx or failed without an answer'),
  seriesHistogram('cluster', 'Upstream attempt latency per cluster'),
  {
    name: 'meridian_fleet_ejected_endpoints',
    help: 'Endpoints of the cluster outlier detection holds ejected',
    type: 'gauge',
    values: (entries) =>
      entries.flatMap((e) =>
        e.summary.clusters.map((c) => ({ value: c.ejected, labels: { ...gatewayLabels(e), cluster: c.name } })),
      ),
  },
  gatewayGauge('meridian_fleet_snapshot_version', 'Hub snapshot version the gateway applied', 'snapshotVersion'),
  gatewayGauge('meridian_fleet_svid_expiry_seconds', "When the gateway's SVID expires (unix time)", 'svidExpiry'),
];

/**
 * The fleet endpoint's registry: prom-client renders (and escapes) the text format; the values are
 * read from `entries()` at each scrape, so nothing is kept beside the gateways' last summaries.
 */
export function fleetRegistry(entries: () => readonly FleetEntry[]): Registry {
  const registry = new Registry();
  for (const f of FAMILIES)
    registry.registerMetric({
      name: f.name,
      help: f.help,
      type: f.type,
      aggregator: 'sum',
      get: () => ({ name: f.name, help: f.help, type: f.type, aggregator: 'sum', values: f.values(entries()) }),
    } as unknown as Parameters<Registry['registerMetric']>[0]);
  return registry;
}
