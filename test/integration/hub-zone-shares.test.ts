// Fleet-derived zone shares (issue 22, slice 3): nobody writes originShares; the hub counts the
// gateways a zone-aware cluster targets per zone, each gateway applies the cluster with those shares,
// and zone-aware routing then splits its traffic as zoneAwareSplit predicts. Two gateways are real
// `node dist/main.js` processes; the rest of the fleet are in-process hub clients speaking the real
// protocol (report, watch, ack), as benchmarks/propagation.mjs does.
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import { startHub, type RunningHub } from '../../src/hub/control-plane.js';
import { HubClient } from '../../src/control/managed/hub-client.js';
import { systemRng } from '../../src/common/clock.js';
import { zoneAwareSplit } from '../../src/lb/locality.js';
import { spawnGateway, tempDir, waitFor, type SpawnedGateway } from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';

const TOKEN = 'zone-fleet-token';
/** Upstream hosts per zone: 25 / 50 / 25 %. */
const UPSTREAM = { 'zone-a': 1, 'zone-b': 2, 'zone-c': 1 } as const;
const ZONE_AWARE = { enabled: true, minClusterSize: 2 };
/**
 * Requests per measurement. With p = 0.5 one standard deviation is 1.67 points, so the tolerance of 8
 * is 4.8 sd. With 400 requests it was 3.2 sd (0.14 % per comparison): over the nine comparisons of
 * a run, a correct split could fail roughly once in 200 runs.
 */
const N = 900;
const TOLERANCE = 0.08;

let hub: RunningHub;
let hubUrl: string;
const upstreams: http.Server[] = [];
const gateways: Record<string, SpawnedGateway> = {};
const clients: HubClient[] = [];

/** A fleet member that only speaks the hub protocol: it reports its zone and acknowledges every snapshot. */
function fleetClient(id: string, zone: string, labels: Record<string, string>): HubClient {
  const client = new HubClient(
    { url: hubUrl, id, token: TOKEN, reportIntervalMs: 60_000 },
    {
      report: () => ({ labels, locality: { region: 'r1', zone, subzone: '' }, instances: [] }),
      apply: async () => undefined,
    },
    systemRng,
  );
  client.start();
  clients.push(client);
  return client;
}

async function hubJson(path: string): Promise<any> {
  const r = await request(`${hubUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return r.body.json();
}

/** The `app` cluster's zone-aware settings as the gateway applied them (its admin GET /config). */
async function appliedZoneAware(gw: SpawnedGateway): Promise<any> {
  const r = await request(`${gw.admin}/config`);
  const config = (await r.body.json()) as { clusters: Array<{ name: string; lb: any }> };
  return config.clusters.find((c) => c.name === 'app')?.lb.zoneAware;
}

/** N sequential requests through a gateway: the fraction answered from each upstream zone. */
async function zoneFractions(gw: SpawnedGateway): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < N; i++) {
    const r = await request(`${gw.url}/`, { headersTimeout: 5000, bodyTimeout: 5000 });
    const key = r.statusCode === 200 ? await r.body.text() : (await r.body.dump(), `status-${r.statusCode}`);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(counts).map(([k, n]) => [k, n / N]));
}

/** What zoneAwareSplit gives a gateway in `zone`, as fractions of its traffic per upstream zone. */
function predicted(zone: string, originShares: Record<string, number>): Record<string, number> {
  const split = zoneAwareSplit(new Map(Object.entries(UPSTREAM)), zone, {
    zoneAware: { ...ZONE_AWARE, originShares },
  } as any)!;
  const out: Record<string, number> = { [zone]: split.local };
  const capacity = split.residual.reduce((s, [, c]) => s + c, 0);
  for (const [z, c] of split.residual) out[z] = capacity > 0 ? ((1 - split.local) * c) / capacity : 0;
  return out;
}

function expectClose(measured: Record<string, number>, expected: Record<string, number>) {
  for (const zone of Object.keys(UPSTREAM)) {
    const want = expected[zone] ?? 0;
    const got = measured[zone] ?? 0;
    // A zone with no share must get nothing at all; the others within the tolerance.
    if (want === 0) expect(got, `${zone} in ${JSON.stringify(measured)}`).toBe(0);
    else expect(Math.abs(got - want), `${zone}: ${got} vs ${want}`).toBeLessThanOrEqual(TOLERANCE);
  }
  expect(Object.keys(measured).filter((k) => k.startsWith('status-'))).toEqual([]);
}

async function spawnZoneGateway(name: string, zone: string): Promise<SpawnedGateway> {
  return spawnGateway({
    gateway: {
      name,
      workers: 1,
      accessLog: { enabled: false },
      locality: { region: 'r1', zone },
      labels: { mesh: 'zoned' },
    },
    admin: { address: '127.0.0.1:0' },
    listeners: [{ name: 'main', address: '127.0.0.1:0', protocol: 'http' }],
    managementServer: { url: hubUrl, token: TOKEN, reportInterval: '1s' },
  });
}

describe('fleet-derived zone shares', () => {
  beforeAll(async () => {
    const endpoints = [];
    for (const [zone, n] of Object.entries(UPSTREAM))
      for (let i = 0; i < n; i++) {
        const port = await closedPort();
        const server = http.createServer((_req, res) => res.end(zone));
        await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
        upstreams.push(server);
        endpoints.push({ address: `127.0.0.1:${port}`, locality: { region: 'r1', zone } });
      }
    const dir = tempDir('meridian-zones-');
    const port = await closedPort();
    hubUrl = `http://127.0.0.1:${port}`;
    const hubFile = join(dir, 'hub.yaml');
    const zoned = { mesh: 'zoned' };
    writeFileSync(
      hubFile,
      stringify({
        hub: { address: `127.0.0.1:${port}`, tokens: [{ name: 'fleet', token: TOKEN }] },
        // No originShares anywhere: the hub derives them.
        clusters: [{ name: 'app', endpoints, lb: { zoneAware: ZONE_AWARE }, targets: zoned }],
        routes: [{ name: 'app', match: { path: { prefix: '/' } }, cluster: 'app', targets: zoned }],
      }),
    );
    hub = await startHub({ configFile: hubFile, stateDir: join(dir, 'hub-state') });
    fleetClient('a-2', 'zone-a', zoned);
    fleetClient('c-1', 'zone-c', zoned);
    // Not targeted by `app`: its zone must not count.
    fleetClient('other-1', 'zone-c', { mesh: 'other' });
    [gateways.a, gateways.b] = await Promise.all([
      spawnZoneGateway('a-1', 'zone-a'),
      spawnZoneGateway('b-1', 'zone-b'),
    ]);
    await waitFor(
      async () => {
        const fleet = await hubJson('/fleet');
        return fleet.gateways.length === 5 && fleet.gateways.every((g: any) => g.connected && g.inSync);
      },
      20_000,
      100,
    );
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.stop();
    await Promise.all(Object.values(gateways).map((g) => g.stop()));
    await hub?.stop();
    await Promise.all(upstreams.map((s) => new Promise((r) => (s.closeAllConnections(), s.close(r)))));
  });

  it('gives every targeted gateway the shares of the targeted gateways per zone, written nowhere', async () => {
    const expected = { 'zone-a': 2, 'zone-b': 1, 'zone-c': 1 };
    for (const gw of Object.values(gateways))
      expect(await appliedZoneAware(gw)).toEqual({ ...ZONE_AWARE, originShares: expected });
    const written = (await hubJson('/config')).clusters[0];
    expect(written.lb.zoneAware.originShares).toBeUndefined();
  });

  it('splits traffic as zoneAwareSplit predicts: zone-a keeps half, zone-b keeps everything', async () => {
    const shares = { 'zone-a': 2, 'zone-b': 1, 'zone-c': 1 };
    const fromA = predicted('zone-a', shares);
    expect(fromA).toEqual({ 'zone-a': 0.5, 'zone-b': 0.5, 'zone-c': 0 });
    expectClose(await zoneFractions(gateways.a!), fromA);
    // Upstream zone-b holds 50 % of the hosts against 25 % of the origin: all of it stays local.
    expectClose(await zoneFractions(gateways.b!), predicted('zone-b', shares));
  }, 30_000);

  it('follows a gateway joining a zone: every targeted gateway gets new shares, and routing follows', async () => {
    const before = (await hubJson('/fleet')).gateways.find((g: any) => g.id === 'a-1').lastAck.hash;
    fleetClient('c-2', 'zone-c', { mesh: 'zoned' });
    const shares = { 'zone-a': 2, 'zone-b': 1, 'zone-c': 2 };
    for (const gw of Object.values(gateways))
      await waitFor(async () => (await appliedZoneAware(gw)).originShares['zone-c'] === 2, 10_000, 50);
    const after = await waitFor(async () => {
      const a = (await hubJson('/fleet')).gateways.find((g: any) => g.id === 'a-1');
      return a.inSync && a.lastAck.hash;
    });
    expect(after).not.toBe(before);
    expect(await appliedZoneAware(gateways.a!)).toEqual({ ...ZONE_AWARE, originShares: shares });
    // Origin 40/20/40 %: zone-a keeps 25/40 = 62.5 % local, zone-c has no residual capacity left.
    const fromA = predicted('zone-a', shares);
    expect(fromA).toEqual({ 'zone-a': 0.625, 'zone-b': 0.375, 'zone-c': 0 });
    expectClose(await zoneFractions(gateways.a!), fromA);
  }, 30_000);
});
