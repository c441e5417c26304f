import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import { writeFileSync } from 'node:fs';
import { startHub, type RunningHub } from '../../src/hub/control-plane.js';
import { spawnGateway, tempDir, waitFor, type SpawnedGateway } from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';
import { TestCa } from '../helpers/pki.js';

const TOKEN = 'fleet-token-0123';
const HOST = 'app-b.mesh.internal';
const fastCheck = {
  http: { path: '/' },
  interval: '150ms',
  timeout: '150ms',
  healthyThreshold: 1,
  unhealthyThreshold: 1,
};

/** A service instance that names its cluster; stop() and start() simulate a crash and a restart. */
class Instance {
  server = http.createServer((req, res) => res.end(this.label));
  constructor(
    readonly label: string,
    readonly port: number,
  ) {}
  start() {
    this.server = http.createServer((req, res) => res.end(this.label));
    return new Promise<void>((r) => this.server.listen(this.port, '127.0.0.1', r));
  }
  stop() {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(r));
  }
}

interface Site {
  name: string;
  region: string;
  zone: string;
  instances: Instance[];
  gw?: SpawnedGateway;
}

const sites: Site[] = [
  { name: 'c-a', region: 'us-east', zone: 'zone-a', instances: [] },
  { name: 'c-b', region: 'us-east', zone: 'zone-b', instances: [] },
  { name: 'c-c', region: 'eu-west', zone: 'zone-a', instances: [] },
];

let hub: RunningHub;
let hubPort: number;
let hubFile: string;
let hubState: string;
const hubUrl = () => `http://127.0.0.1:${hubPort}`;
const hubApi = (path: string, init: { method?: string; body?: unknown } = {}) =>
  request(`${hubUrl()}${path}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });

async function json(path: string): Promise<any> {
  const r = await hubApi(path);
  return r.body.json();
}

async function startTheHub() {
  hub = await startHub({ configFile: hubFile, stateDir: hubState });
}

/** Send n requests through a gateway to the virtual destination; count by serving cluster. */
async function shares(gw: SpawnedGateway, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await request(`${gw.url}/`, { headers: { host: HOST } });
    const text = await r.body.text();
    const key = r.statusCode === 200 ? text.split('/')[0]! : `status-${r.statusCode}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

/** Wait until the gateway's traffic has moved to `cluster` (one probe), then measure. */
async function settleOn(gw: SpawnedGateway, cluster: string) {
  await waitFor(async () => (await shares(gw, 20))[cluster] === 20, 15000, 100);
  return shares(gw, 200);
}

describe('multi-cluster: hub, fleet and virtual destinations', () => {
  beforeAll(async () => {
    const ca = new TestCa('Mesh CA');
    const dir = tempDir('meridian-mc-');
    hubPort = await closedPort();
    hubFile = join(dir, 'hub.yaml');
    hubState = join(dir, 'hub-state');
    writeFileSync(
      hubFile,
      stringify({
        hub: {
          address: `127.0.0.1:${hubPort}`,
          tokens: [
            { name: 'fleet', token: TOKEN },
            { name: 'c-a-only', token: 'c-a-only-token', gateways: ['c-a'] },
          ],
        },
        virtualDestinations: [{ name: 'app-b', host: HOST, selector: { app: 'b' }, healthCheck: fastCheck }],
      }),
    );
    await startTheHub();
    await Promise.all(
      sites.map(async (site) => {
        for (let i = 1; i <= 2; i++) site.instances.push(new Instance(`${site.name}/${i}`, await closedPort()));
        await Promise.all(site.instances.map((x) => x.start()));
        const cert = ca.issue({
          cn: site.name,
          san: [`DNS:*.mesh.internal`, 'IP:127.0.0.1', `URI:spiffe://mesh.internal/gateway/${site.name}`],
          eku: 'serverAuth,clientAuth',
        });
        const ew = `127.0.0.1:${await closedPort()}`;
        site.gw = await spawnGateway({
          gateway: {
            name: site.name,
            workers: 1,
            accessLog: { enabled: false },
            locality: { region: site.region, zone: site.zone },
            labels: { cluster: site.name },
          },
          admin: { address: '127.0.0.1:0' },
          listeners: [
            { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
            {
              name: 'east-west',
              address: ew,
              protocol: 'https',
              tls: { cert: cert.cert, key: cert.key, ca: ca.cert, requireClientCert: true },
            },
          ],
          clusters: [
            {
              name: 'app-b',
              endpoints: site.instances.map((x) => ({ address: `127.0.0.1:${x.port}`, labels: { app: 'b' } })),
              healthCheck: fastCheck,
            },
          ],
          managementServer: {
            url: hubUrl(),
            token: TOKEN,
            reportInterval: '1s',
            eastWest: { address: ew, tls: { ca: ca.cert, cert: cert.cert, key: cert.key } },
          },
        });
      }),
    );
    await waitFor(
      async () => {
        const fleet = await json('/fleet');
        return fleet.gateways.length === 3 && fleet.gateways.every((g: any) => g.connected && g.inSync);
      },
      15000,
      100,
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.all(sites.map((s) => s.gw?.stop()));
    await hub?.stop();
    await Promise.all(sites.flatMap((s) => s.instances.map((x) => x.stop())));
  });

  it('reports every gateway in /fleet with labels, locality and its acknowledged version', async () => {
    const fleet = await json('/fleet');
    expect(fleet.gateways.map((g: any) => g.id).sort()).toEqual(['c-a', 'c-b', 'c-c']);
    for (const g of fleet.gateways) {
      expect(g).toMatchObject({ connected: true, inSync: true, instances: 2, lastAck: { version: fleet.version } });
      expect(g.labels.cluster).toBe(g.id);
    }
  });

  it('fails over local -> same region -> other region over mTLS, and comes back', async () => {
    const a = sites[0]!.gw!;
    expect(await settleOn(a, 'c-a')).toEqual({ 'c-a': 200 });
    await Promise.all(sites[0]!.instances.map((x) => x.stop()));
    expect(await settleOn(a, 'c-b')).toEqual({ 'c-b': 200 });
    await Promise.all(sites[1]!.instances.map((x) => x.stop()));
    expect(await settleOn(a, 'c-c')).toEqual({ 'c-c': 200 });
    await Promise.all([...sites[0]!.instances, ...sites[1]!.instances].map((x) => x.start()));
    expect(await settleOn(a, 'c-a')).toEqual({ 'c-a': 200 });
    // The eu-west gateway prefers its own instances too: closest-first is per gateway.
    expect(await settleOn(sites[2]!.gw!, 'c-c')).toEqual({ 'c-c': 200 });
  }, 60_000);

  it('confines a gateway-scoped hub token to its gateway ids and the gateway protocol', async () => {
    const scoped = (path: string, method = 'GET', body?: unknown) =>
      request(`${hubUrl()}${path}`, {
        method: method as 'GET',
        headers: { authorization: 'Bearer c-a-only-token', 'content-type': 'application/json' },
        body: body && JSON.stringify(body),
      });
    const report = { labels: {}, locality: { region: 'x', zone: 'y', subzone: '' }, instances: [] };
    const asOther = await scoped('/v1/gateways/c-b/report', 'POST', report);
    expect(asOther.statusCode).toBe(403);
    await asOther.body.dump();
    const admin = await scoped('/config', 'PUT', {});
    expect(admin.statusCode).toBe(403);
    await admin.body.dump();
  });

  it('refuses local writes to managed resources with 409', async () => {
    const r = await request(`${sites[0]!.gw!.admin}/routes/vd.app-b`, {
      method: 'PUT',
      body: JSON.stringify({ match: {}, directResponse: { status: 200 } }),
      headers: { 'content-type': 'application/json' },
    });
    expect(r.statusCode).toBe(409);
    expect(((await r.body.json()) as any).message).toMatch(/managed by/);
  });

  it('keeps serving with zero failures while the hub is down, and resyncs when it returns', async () => {
    const a = sites[0]!.gw!;
    const traffic = shares(a, 300);
    await new Promise((r) => setTimeout(r, 30));
    await hub.stop();
    expect(await traffic).toEqual({ 'c-a': 300 });
    // A gateway restarted while the hub is away serves its persisted snapshot (static stability).
    const c = sites[2]!;
    await c.gw!.stop();
    c.gw = await spawnGateway(c.gw!.configFile, { stateDir: c.gw!.stateDir });
    expect(await shares(c.gw, 50)).toEqual({ 'c-c': 50 });
    await startTheHub();
    await waitFor(async () => (await json('/fleet')).gateways.filter((g: any) => g.connected).length === 3, 20000, 100);
    const put = await hubApi('/routes/hello', {
      method: 'PUT',
      body: { match: { path: { exact: '/hello' } }, directResponse: { status: 200, body: 'hello from the hub' } },
    });
    expect(put.statusCode).toBe(200);
    const { version } = (await put.body.json()) as { version: number };
    for (const s of sites) {
      await waitFor(
        async () => {
          const r = await request(`${s.gw!.url}/hello`);
          return (await r.body.text()) === 'hello from the hub';
        },
        20000,
        50,
      );
    }
    // A gateway serves the new snapshot before its acknowledgement reaches the hub.
    const fleet = await waitFor(
      async () => {
        const f = await json('/fleet');
        return f.gateways.every((g: any) => g.lastAck?.version === version) ? f : undefined;
      },
      10000,
      50,
    );
    expect(fleet.gateways.map((g: any) => g.lastAck.version)).toEqual([version, version, version]);
  }, 60_000);

  it('a snapshot that fails validation on one gateway is rejected there, reported in /fleet, applied elsewhere', async () => {
    // The route targets c-a only, the cluster it uses targets c-b only: valid as a fleet, invalid on c-a.
    const cfg = await json('/config');
    cfg.clusters = [
      ...cfg.clusters,
      { name: 'b-only', endpoints: [{ address: '127.0.0.1:9' }], targets: { cluster: 'c-b' } },
    ];
    cfg.routes = [
      ...cfg.routes,
      { name: 'a-only', match: { path: { prefix: '/a-only' } }, cluster: 'b-only', targets: { cluster: 'c-a' } },
    ];
    const put = await hubApi('/config', { method: 'PUT', body: cfg });
    expect(put.statusCode).toBe(200);
    const { version } = (await put.body.json()) as { version: number };
    const fleet = await waitFor(
      async () => {
        const f = await json('/fleet');
        const byId = Object.fromEntries(f.gateways.map((g: any) => [g.id, g]));
        return byId['c-a'].lastRejected?.version === version && byId['c-b'].lastAck?.version === version
          ? byId
          : undefined;
      },
      10000,
      50,
    );
    expect(fleet['c-a'].lastRejected.errors.map((e: any) => e.path)).toContain('routes[1].cluster');
    expect(fleet['c-a'].inSync).toBe(false);
    // c-a still serves its previous config; c-b has the new cluster.
    expect(await shares(sites[0]!.gw!, 20)).toEqual({ 'c-a': 20 });
    const b = await request(`${sites[1]!.gw!.admin}/clusters/b-only`);
    expect(b.statusCode).toBe(200);
    await b.body.dump();
    const aRoute = await request(`${sites[0]!.gw!.admin}/routes/a-only`);
    expect(aRoute.statusCode).toBe(404);
    await aRoute.body.dump();
  }, 30_000);

  it('validates the fleet document with field paths and keeps the old one live', async () => {
    const before = await json('/config');
    const r = await hubApi('/virtualDestinations/bad', {
      method: 'PUT',
      body: { host: 'x.mesh', selector: {}, port: 70000 },
    });
    expect(r.statusCode).toBe(400);
    const body = (await r.body.json()) as { errors: Array<{ path: string }> };
    expect(body.errors.map((e) => e.path)).toContain('virtualDestinations[1].port');
    expect(await json('/config')).toEqual(before);
  });
});
