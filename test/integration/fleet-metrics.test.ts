import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import { startHub, type RunningHub } from '../../src/hub/control-plane.js';
import { spawnGateway, tempDir, waitFor, type SpawnedGateway } from '../helpers/gateway.js';
import { closedPort, okHandler, startUpstream, type TestUpstream } from '../helpers/upstream.js';

const TOKEN = 'fleet-metrics-token-0123';

/** What each gateway is sent: requests to the route that answers 200, the one answering 500, and the one whose upstream is down. */
interface Site {
  id: string;
  region: string;
  zone: string;
  sent: { ok: number; fail: number; down: number };
  gw?: SpawnedGateway;
}

const sites: Site[] = [
  { id: 'gw-east', region: 'us-east', zone: 'us-east-1a', sent: { ok: 7, fail: 3, down: 2 } },
  { id: 'gw-west', region: 'eu-west', zone: 'eu-west-1b', sent: { ok: 5, fail: 3, down: 1 } },
];

let hub: RunningHub;
let hubUrl: string;
let app: TestUpstream;
let flaky: TestUpstream;

/** One sample of a Prometheus text exposition. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parse the text format (the label values here carry no escapes). */
function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? (\S+)$/i.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample of `name` with (at least) `labels`; undefined when absent. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${hits.length} samples`);
  return hits[0]?.value;
}

/** The sum over every sample of `name` with (at least) `labels`. */
const sumOf = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);

function scrape(token = TOKEN) {
  return request(`${hubUrl}/fleet/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
}

async function send(gw: SpawnedGateway, path: string, n: number, status: number) {
  for (let i = 0; i < n; i++) {
    const r = await request(`${gw.url}${path}`);
    await r.body.dump();
    expect(r.statusCode).toBe(status);
  }
}

describe('fleet metrics at the hub', () => {
  beforeAll(async () => {
    const dir = tempDir('meridian-fleet-metrics-');
    const hubPort = await closedPort();
    hubUrl = `http://127.0.0.1:${hubPort}`;
    writeFileSync(
      join(dir, 'hub.yaml'),
      stringify({
        hub: {
          address: `127.0.0.1:${hubPort}`,
          tokens: [
            { name: 'fleet', token: TOKEN },
            { name: 'east-only', token: 'east-only-token', gateways: ['gw-east'] },
          ],
        },
      }),
    );
    hub = await startHub({ configFile: join(dir, 'hub.yaml'), stateDir: join(dir, 'hub-state') });
    app = await startUpstream(okHandler('app'));
    flaky = await startUpstream((_req, res) => {
      res.writeHead(500, { 'content-length': 0 });
      res.end();
    });
    const down = `127.0.0.1:${await closedPort()}`;
    await Promise.all(
      sites.map(async (site) => {
        site.gw = await spawnGateway({
          gateway: {
            name: site.id,
            // Two workers: the summary must add up what each one counted.
            workers: 2,
            accessLog: { enabled: false },
            locality: { region: site.region, zone: site.zone },
          },
          admin: { address: '127.0.0.1:0' },
          listeners: [{ name: 'main', address: '127.0.0.1:0', protocol: 'http' }],
          routes: [
            { name: 'ok', match: { path: { prefix: '/ok' } }, cluster: 'app' },
            { name: 'fail', match: { path: { prefix: '/fail' } }, cluster: 'flaky' },
            { name: 'down', match: { path: { prefix: '/down' } }, cluster: 'gone' },
          ],
          clusters: [
            { name: 'app', endpoints: [{ address: app.address }] },
            {
              name: 'flaky',
              endpoints: [{ address: flaky.address }],
              // Ejected on the third 5xx in a row, so all three requests reach it first.
              outlierDetection: { consecutive5xx: 3, maxEjectionPercent: 100, baseEjectionTime: '300s' },
            },
            { name: 'gone', endpoints: [{ address: down }] },
          ],
          managementServer: { url: hubUrl, token: TOKEN, reportInterval: '300ms' },
        });
      }),
    );
    await waitFor(
      async () => {
        const r = await request(`${hubUrl}/fleet`, { headers: { authorization: `Bearer ${TOKEN}` } });
        const fleet = (await r.body.json()) as { gateways: Array<{ inSync: boolean }> };
        return fleet.gateways.length === 2 && fleet.gateways.every((g) => g.inSync);
      },
      20000,
      100,
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.all(sites.map((s) => s.gw?.stop()));
    await hub?.stop();
    await app?.close();
    await flaky?.close();
  });

  it("shows both gateways' traffic in one scrape, with gateway, region, zone, route and cluster labels and exact sums", async () => {
    for (const s of sites) {
      await send(s.gw!, '/ok', s.sent.ok, 200);
      await send(s.gw!, '/fail', s.sent.fail, 500);
      await send(s.gw!, '/down', s.sent.down, 502);
    }
    // Summaries travel with the next reports; wait for one scrape that has all of it, then check that scrape.
    const samples = await waitFor(
      async () => {
        const r = await scrape();
        expect(r.statusCode).toBe(200);
        expect(r.headers['content-type']).toMatch(/^text\/plain/);
        const s = parseSamples(await r.body.text());
        const total = sumOf(s, 'meridian_fleet_route_requests_total');
        const ejected = sumOf(s, 'meridian_fleet_ejected_endpoints');
        return total === 21 && ejected === 2 && s;
      },
      15000,
      100,
    );

    for (const site of sites) {
      const labels = { gateway: site.id, region: site.region, zone: site.zone };
      const route = (name: string, route: string) => valueOf(samples, name, { ...labels, route });
      const cluster = (name: string, cluster: string) => valueOf(samples, name, { ...labels, cluster });
      expect(route('meridian_fleet_route_requests_total', 'ok')).toBe(site.sent.ok);
      expect(route('meridian_fleet_route_errors_total', 'ok')).toBe(0);
      expect(route('meridian_fleet_route_requests_total', 'fail')).toBe(site.sent.fail);
      expect(route('meridian_fleet_route_errors_total', 'fail')).toBe(site.sent.fail);
      expect(route('meridian_fleet_route_errors_total', 'down')).toBe(site.sent.down);
      // The latency histogram counts every request of the route; +Inf is the total.
      expect(route('meridian_fleet_route_request_duration_seconds_count', 'ok')).toBe(site.sent.ok);
      expect(
        valueOf(samples, 'meridian_fleet_route_request_duration_seconds_bucket', {
          ...labels,
          route: 'ok',
          le: '+Inf',
        }),
      ).toBe(site.sent.ok);
      expect(route('meridian_fleet_route_request_duration_seconds_sum', 'ok')).toBeGreaterThan(0);
      // Per cluster, summed over its endpoints: the 500s and the refused connections are errors.
      expect(cluster('meridian_fleet_cluster_requests_total', 'app')).toBe(site.sent.ok);
      expect(cluster('meridian_fleet_cluster_errors_total', 'flaky')).toBe(site.sent.fail);
      expect(cluster('meridian_fleet_cluster_requests_total', 'gone')).toBe(site.sent.down);
      expect(cluster('meridian_fleet_cluster_errors_total', 'gone')).toBe(site.sent.down);
      expect(cluster('meridian_fleet_cluster_request_duration_seconds_count', 'app')).toBe(site.sent.ok);
      expect(cluster('meridian_fleet_ejected_endpoints', 'flaky')).toBe(1);
      expect(cluster('meridian_fleet_ejected_endpoints', 'app')).toBe(0);
      expect(valueOf(samples, 'meridian_fleet_snapshot_version', labels)).toBe(hub.store.current!.version);
      // Each gateway process names itself: replicas of one gateway id would be series of their own.
      expect(samples.find((s) => s.labels.gateway === site.id)?.labels.replica).toMatch(/^[0-9a-f-]{36}$/);
    }
    // Fleet-wide sums, as a PromQL sum() over the scrape would give them.
    expect(sumOf(samples, 'meridian_fleet_route_requests_total', { route: 'ok' })).toBe(12);
    expect(sumOf(samples, 'meridian_fleet_route_errors_total')).toBe(9);
    expect(sumOf(samples, 'meridian_fleet_cluster_errors_total', { region: 'us-east' })).toBe(5);
    // No SVIDs in this fleet: the expiry gauge has no samples rather than a zero.
    expect(samples.some((s) => s.name === 'meridian_fleet_svid_expiry_seconds')).toBe(false);
  }, 60_000);

  it('serves the fleet metrics to operators only, as /fleet', async () => {
    const anonymous = await scrape('');
    await anonymous.body.dump();
    expect(anonymous.statusCode).toBe(401);
    const gateway = await scrape('east-only-token');
    await gateway.body.dump();
    expect(gateway.statusCode).toBe(403);
  });

  it('refuses a report whose summary does not add up, naming the field', async () => {
    const summary = {
      intervalSeconds: 1,
      bounds: [0.1, 1],
      routes: [{ name: 'r', requests: 1, errors: 0, buckets: [1, 0], latencySum: 0.05 }],
      clusters: [],
    };
    const r = await request(`${hubUrl}/v1/gateways/gw-east/report`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        labels: {},
        locality: { region: 'us-east', zone: 'z', subzone: '' },
        instances: [],
        summary,
      }),
    });
    expect(r.statusCode).toBe(400);
    expect(((await r.body.json()) as { errors: Array<{ path: string }> }).errors).toEqual([
      expect.objectContaining({ path: 'summary.routes[0].buckets' }),
    ]);
  });
});
