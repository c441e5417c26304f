import { describe, expect, it } from 'vitest';
import { ReportSchema, validateHubConfig } from '../../../src/hub/config.js';
import { Fleet } from '../../../src/hub/fleet.js';
import { fleetRegistry, isStale, summaryErrors, type FleetEntry } from '../../../src/hub/fleet-metrics.js';
import { FLEET_OTHER, FLEET_SERIES_MAX, type FleetSummary } from '../../../src/hub/protocol.js';
import { collectSchemaErrors } from '../../../src/config/validate.js';
import { foldBeyond, summarizeTraffic, type MetricJson } from '../../../src/observability/fleet-summary.js';

const BOUNDS = [0.01, 0.1, 1];

/** The aggregated JSON of `routes` routes, route i with i+1 requests (one of them 5xx) at 50 ms. */
function gatewayMetrics(routes: number): MetricJson[] {
  const rq: MetricJson['values'][number][] = [];
  const time: MetricJson['values'][number][] = [];
  for (let i = 0; i < routes; i++) {
    const route = `r${i}`;
    rq.push({ value: i, labels: { route, status_class: '2xx' } });
    rq.push({ value: 1, labels: { route, status_class: '5xx' } });
    // Cumulative buckets as prom-client renders them: nothing under 10 ms, everything under 100 ms.
    for (const [le, v] of [
      [0.01, 0],
      [0.1, i + 1],
      [1, i + 1],
      ['+Inf', i + 1],
    ] as const)
      time.push({ value: v, labels: { route, le }, metricName: 'meridian_downstream_rq_time_seconds_bucket' });
    time.push({ value: (i + 1) * 0.05, labels: { route }, metricName: 'meridian_downstream_rq_time_seconds_sum' });
  }
  return [
    { name: 'meridian_downstream_rq_total', values: rq },
    { name: 'meridian_downstream_rq_time_seconds', values: time },
    {
      name: 'meridian_upstream_rq_total',
      values: [
        { value: 7, labels: { cluster: 'shop', endpoint: '10.0.0.1:80', status_class: '2xx' } },
        { value: 2, labels: { cluster: 'shop', endpoint: '10.0.0.2:80', status_class: '5xx' } },
        { value: 1, labels: { cluster: 'shop', endpoint: '10.0.0.2:80', status_class: '0xx' } },
      ],
    },
  ];
}

function summary(extra: Partial<FleetSummary> = {}): FleetSummary {
  const { routes, clusters } = summarizeTraffic(gatewayMetrics(3), BOUNDS, new Map([['shop', 1]]));
  return { intervalSeconds: 10, bounds: BOUNDS, routes, clusters, snapshotVersion: 4, ...extra };
}

describe('fleet summary (gateway side)', () => {
  it('sums a cluster over its endpoints: 5xx and failed attempts (0xx) are its errors', () => {
    const { clusters } = summarizeTraffic(gatewayMetrics(1), BOUNDS, new Map([['shop', 1]]));
    expect(clusters).toEqual([
      { name: 'shop', requests: 10, errors: 3, buckets: [0, 0, 0, 0], latencySum: 0, ejected: 1 },
    ]);
  });

  it('turns cumulative buckets into counts per bucket and counts a route 5xx as its errors', () => {
    const { routes } = summarizeTraffic(gatewayMetrics(2), BOUNDS, new Map());
    expect(routes).toEqual([
      { name: 'r0', requests: 1, errors: 1, buckets: [0, 1, 0, 0], latencySum: 0.05 },
      { name: 'r1', requests: 2, errors: 1, buckets: [0, 2, 0, 0], latencySum: 0.1 },
    ]);
  });

  it('keeps the busiest FLEET_SERIES_MAX routes of 1000 and folds the rest into _other, sums unchanged', () => {
    const { routes } = summarizeTraffic(gatewayMetrics(1000), BOUNDS, new Map());
    expect(routes).toHaveLength(FLEET_SERIES_MAX + 1);
    expect(routes[0].name).toBe('r999');
    const other = routes.at(-1)!;
    expect(other.name).toBe(FLEET_OTHER);
    // Routes r0..r949 have 1..950 requests each: 950 * 951 / 2.
    expect(other.requests).toBe(451725);
    expect(other.errors).toBe(950);
    expect(other.buckets).toEqual([0, 451725, 0, 0]);
    const total = routes.reduce((n, r) => n + r.requests, 0);
    expect(total).toBe((1000 * 1001) / 2);
    // Bounded: the report's summary stays a few KiB whatever the route count.
    expect(JSON.stringify(routes).length).toBeLessThan(8000);
  });

  it('folds by requests, names breaking ties, and sums ejected endpoints', () => {
    const s = (name: string, requests: number, ejected: number) => ({
      name,
      requests,
      errors: 0,
      buckets: [requests],
      latencySum: 0,
      ejected,
    });
    expect(foldBeyond([s('d', 1, 1), s('a', 10, 0), s('c', 3, 2), s('b', 5, 0)], 2)).toEqual([
      s('a', 10, 0),
      s('b', 5, 0),
      s(FLEET_OTHER, 4, 3),
    ]);
    // A route named _other itself is folded too rather than named twice.
    expect(foldBeyond([s(FLEET_OTHER, 9, 0), s('a', 10, 0), s('b', 5, 0)], 1)).toEqual([
      s('a', 10, 0),
      s(FLEET_OTHER, 14, 0),
    ]);
  });
});

describe('fleet summary validation (hub side)', () => {
  const errorsOf = (s: unknown) => {
    const report = { labels: {}, locality: { region: 'r', zone: 'z', subzone: '' }, instances: [], summary: s };
    const schema = collectSchemaErrors(ReportSchema, report);
    return schema.length ? schema : summaryErrors(s as FleetSummary);
  };

  it('accepts a gateway summary', () => {
    expect(errorsOf(summary())).toEqual([]);
  });

  it('refuses non-finite numbers, wrong types and too many series, each with its path', () => {
    // JSON.parse turns an overlong number into Infinity.
    const infinite = JSON.parse(JSON.stringify(summary()).replace('"requests":1,', '"requests":1e999,'));
    expect(errorsOf(infinite).map((e) => e.path)).toContain('summary.routes[0].requests');
    const badName = summary();
    (badName.routes[0] as { name: unknown }).name = 42;
    expect(errorsOf(badName).map((e) => e.path)).toContain('summary.routes[0].name');
    const many = summary({ routes: Array.from({ length: FLEET_SERIES_MAX + 2 }, () => summary().routes[0]) });
    expect(errorsOf(many).map((e) => e.path)).toContain('summary.routes');
    expect(errorsOf(summary({ intervalSeconds: -1 })).map((e) => e.path)).toContain('summary.intervalSeconds');
  });

  it('refuses buckets that do not match the bounds, unordered bounds and a name twice', () => {
    const s = summary();
    s.routes[1].buckets.pop();
    s.routes[2].name = s.routes[0].name;
    expect(errorsOf(s).map((e) => e.path)).toEqual(['summary.routes[1].buckets', 'summary.routes[2].name']);
    expect(errorsOf(summary({ bounds: [0.1, 0.01, 1] })).map((e) => e.path)).toEqual(['summary.bounds']);
  });
});

describe('fleet metrics endpoint rendering', () => {
  const entry = (gateway: string, zone: string): FleetEntry => ({
    gateway,
    replica: 'r1',
    locality: { region: 'eu', zone, subzone: '' },
    summary: summary({ svidExpiry: 1800000000 }),
    receivedAt: 0,
  });

  it('renders every gateway with gateway, region, zone and route or cluster labels', async () => {
    const text = await fleetRegistry(() => [entry('gw-a', 'z1'), entry('gw-b', 'z2')]).metrics();
    expect(text).toContain(
      'meridian_fleet_route_requests_total{gateway="gw-a",replica="r1",region="eu",zone="z1",route="r2"} 3',
    );
    expect(text).toContain(
      'meridian_fleet_route_errors_total{gateway="gw-b",replica="r1",region="eu",zone="z2",route="r0"} 1',
    );
    expect(text).toContain(
      'meridian_fleet_route_request_duration_seconds_bucket{gateway="gw-a",replica="r1",region="eu",zone="z1",route="r1",le="0.1"} 2',
    );
    expect(text).toContain(
      'meridian_fleet_route_request_duration_seconds_bucket{gateway="gw-a",replica="r1",region="eu",zone="z1",route="r1",le="+Inf"} 2',
    );
    expect(text).toContain(
      'meridian_fleet_cluster_requests_total{gateway="gw-a",replica="r1",region="eu",zone="z1",cluster="shop"} 10',
    );
    expect(text).toContain(
      'meridian_fleet_cluster_errors_total{gateway="gw-a",replica="r1",region="eu",zone="z1",cluster="shop"} 3',
    );
    expect(text).toContain(
      'meridian_fleet_ejected_endpoints{gateway="gw-b",replica="r1",region="eu",zone="z2",cluster="shop"} 1',
    );
    expect(text).toContain('meridian_fleet_snapshot_version{gateway="gw-a",replica="r1",region="eu",zone="z1"} 4');
    expect(text).toContain(
      'meridian_fleet_svid_expiry_seconds{gateway="gw-a",replica="r1",region="eu",zone="z1"} 1800000000',
    );
    expect(text).toContain('# TYPE meridian_fleet_route_request_duration_seconds histogram');
  });

  it('escapes label values a gateway chose', async () => {
    const e = entry('gw-a', 'z1');
    e.summary.routes[0].name = 'a"b\\c\nd';
    const text = await fleetRegistry(() => [e]).metrics();
    expect(text).toContain('route="a\\"b\\\\c\\nd"');
  });

  it('drops a summary not refreshed within three report intervals (and never before 10 s)', () => {
    const e = entry('gw-a', 'z1');
    expect(isStale(e, 30000)).toBe(false);
    expect(isStale(e, 30001)).toBe(true);
    e.summary.intervalSeconds = 1;
    expect(isStale(e, 10000)).toBe(false);
    expect(isStale(e, 10001)).toBe(true);
  });
});

describe('the fleet keeps one summary per gateway replica', () => {
  it('keeps replicas of one gateway id apart and forgets a summary once stale', () => {
    const v = validateHubConfig({ hub: {} });
    if (!v.ok) throw new Error(JSON.stringify(v.errors));
    const fleet = new Fleet(v.config, 1);
    const report = { labels: {}, locality: { region: 'eu', zone: 'z1', subzone: '' }, instances: [] };
    const start = Date.now();
    fleet.report('gw-a', { ...report, summary: summary() }, 'token:fleet', 'replica-1');
    fleet.report('gw-a', { ...report, summary: summary() }, 'token:fleet', 'replica-2');
    fleet.report('gw-b', report, 'token:fleet', 'replica-3');
    expect(fleet.metrics(start).map((e) => `${e.gateway}/${e.replica}`)).toEqual(['gw-a/replica-1', 'gw-a/replica-2']);
    // The report itself, as GET /fleet shows it, does not carry the summary.
    expect(fleet.list()[0]).not.toHaveProperty('summary');
    expect(fleet.metrics(start + 60_000)).toEqual([]);
    fleet.close();
  });
});
