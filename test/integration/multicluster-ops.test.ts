// Operational multi-cluster scenarios the main multicluster test does not cover: the hub as a real
// `control-plane` process SIGKILLed under concurrent traffic, active-passive failover
// (`failover.order`), replicas sharing one gateway identity, and no ping-pong across clusters.
// Everything runs as real processes; the hub API and the east-west listeners use mTLS with
// certificates issued by a throwaway CA at test time.
import http from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import {
  spawnGateway,
  spawnMain,
  tempDir,
  waitFor,
  writeConfig,
  type MainProcess,
  type SpawnedGateway,
} from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';
import { TestCa, type Issued } from '../helpers/pki.js';

const HOST = 'app-b.mesh.internal'; // default failover: closest first
const HOST_P = 'app-p.mesh.internal'; // active-passive: failover.order [c-b, c-a]
const fastCheck = {
  http: { path: '/' },
  interval: '150ms',
  timeout: '150ms',
  healthyThreshold: 1,
  unhealthyThreshold: 1,
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A service instance that names its cluster and records the paths it was asked for. */
class Instance {
  server?: http.Server;
  paths: string[] = [];
  constructor(
    readonly label: string,
    readonly port: number,
  ) {}
  start() {
    if (this.server?.listening) return Promise.resolve();
    this.server = http.createServer((req, res) => {
      this.paths.push(req.url ?? '');
      res.end(this.label);
    });
    return new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', r));
  }
  stop() {
    const s = this.server;
    if (!s?.listening) return Promise.resolve();
    s.closeAllConnections();
    return new Promise((r) => s.close(r));
  }
}

interface Site {
  name: string;
  region: string;
  zone: string;
  instances: Instance[];
  cert?: Issued;
  eastWest?: string;
  gw?: SpawnedGateway;
}

const sites: Site[] = [
  { name: 'c-a', region: 'us-east', zone: 'zone-a', instances: [] },
  { name: 'c-b', region: 'us-east', zone: 'zone-b', instances: [] },
  { name: 'c-c', region: 'eu-west', zone: 'zone-a', instances: [] },
];
const [A, B, C] = sites as [Site, Site, Site];
/** Two processes of one gateway `c-r`: same config file, same certificate, own state dirs and ports. */
const replicas: SpawnedGateway[] = [];

let ca: TestCa;
let ops: Agent; // operator: client certificate without a SPIFFE ID
let hubPort: number;
let hubFile: string;
let hubState: string;

type HubProcess = MainProcess<unknown>;
let hubProc: HubProcess | undefined;

/** `node dist/main.js control-plane`; resolves on its "ready" log line. */
const spawnHub = (): Promise<HubProcess> =>
  spawnMain(['control-plane', '-c', hubFile, '--state-dir', hubState], 'hub', {}, 15_000);

const hubUrl = () => `https://127.0.0.1:${hubPort}`;
async function hubApi(path: string, init: { method?: string; body?: unknown } = {}) {
  const r = await request(`${hubUrl()}${path}`, {
    dispatcher: ops,
    method: (init.method ?? 'GET') as 'GET',
    headers: { 'content-type': 'application/json' },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    headersTimeout: 5000,
    bodyTimeout: 5000,
  });
  return { status: r.statusCode, headers: r.headers, body: (await r.body.json()) as any };
}
const fleet = async () => (await hubApi('/fleet')).body as { version: number; gateways: any[] };
const fleetById = async () => Object.fromEntries((await fleet()).gateways.map((g) => [g.id, g]));

async function ready(gw: SpawnedGateway): Promise<any> {
  const r = await request(`${gw.admin}/ready`, { headersTimeout: 5000, bodyTimeout: 5000 });
  return r.body.json();
}

async function text(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers, headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: r.statusCode, body: await r.body.text() };
}

/** n sequential requests through a gateway for `host`; counts by serving cluster (or status). */
async function shares(gw: SpawnedGateway, host: string, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await text(`${gw.url}/`, { host });
    const key = r.status === 200 ? r.body.split('/')[0]! : `status-${r.status}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

/** Wait (bounded) until 20 requests in a row land on `cluster`, then measure 100 more. */
async function settleOn(gw: SpawnedGateway, host: string, cluster: string) {
  await waitFor(async () => (await shares(gw, host, 20))[cluster] === 20, 15_000, 100);
  return shares(gw, host, 100);
}

/** `concurrency` request loops through `gw` for `host`, each bounded in time and count. */
async function load(gw: SpawnedGateway, host: string, ms: number, concurrency: number) {
  const dispatcher = new Agent({ connections: concurrency });
  const stats = { requests: 0, non2xx: 0, errors: 0, by: {} as Record<string, number>, failures: [] as string[] };
  const end = Date.now() + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = 0; i < 50_000 && Date.now() < end; i++) {
        stats.requests++;
        try {
          const r = await request(`${gw.url}/`, {
            dispatcher,
            headers: { host },
            headersTimeout: 5000,
            bodyTimeout: 5000,
          });
          const body = await r.body.text();
          if (r.statusCode >= 200 && r.statusCode < 300) {
            const k = body.split('/')[0]!;
            stats.by[k] = (stats.by[k] ?? 0) + 1;
          } else {
            stats.non2xx++;
            if (stats.failures.length < 5) stats.failures.push(`${r.statusCode} ${body}`);
          }
        } catch (e) {
          stats.errors++;
          if (stats.failures.length < 5) stats.failures.push(String(e));
        }
      }
    }),
  );
  await dispatcher.close();
  return stats;
}

const allGateways = () => [...sites.map((s) => s.gw!), ...replicas];

/** PUT a directResponse route at the hub; wait (bounded) until every gateway process serves it and every fleet id acks it. */
async function putRouteAndWaitEverywhere(name: string, body: string) {
  const put = await hubApi(`/routes/${name}`, {
    method: 'PUT',
    body: { match: { path: { exact: `/${name}` } }, directResponse: { status: 200, body } },
  });
  expect(put.status).toBe(200);
  const version = put.body.version as number;
  for (const gw of allGateways())
    await waitFor(async () => (await text(`${gw.url}/${name}`)).body === body, 20_000, 50);
  const byId = await waitFor(
    async () => {
      const f = await fleetById();
      // Replicas of one identity (c-r) acknowledge one by one: lastAck is the first one's, inSync
      // holds once every replica has acknowledged. A CI run read the fleet between the two.
      return Object.values(f).every((g: any) => g.lastAck?.version === version && g.inSync) ? f : undefined;
    },
    10_000,
    50,
  );
  return { version, byId };
}

async function stopGateway(gw: SpawnedGateway | undefined) {
  if (!gw || gw.proc.exitCode !== null || gw.proc.signalCode !== null) return;
  try {
    process.kill(gw.proc.pid!, 'SIGCONT');
  } catch {
    /* gone */
  }
  const stopped = await Promise.race([gw.stop().then(() => true), sleep(10_000).then(() => false)]);
  if (!stopped) gw.kill('SIGKILL');
}

function gatewayConfig(
  name: string,
  cert: Issued,
  locality: { region: string; zone: string },
  extra: { instances?: Instance[]; eastWest?: string },
) {
  const ew = extra.eastWest;
  return {
    gateway: { name, workers: 1, accessLog: { enabled: false }, locality, labels: { cluster: name } },
    admin: { address: '127.0.0.1:0' },
    listeners: [
      { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
      ...(ew
        ? [
            {
              name: 'east-west',
              address: ew,
              protocol: 'https',
              tls: { cert: cert.cert, key: cert.key, ca: ca.cert, requireClientCert: true },
            },
          ]
        : []),
    ],
    clusters: extra.instances
      ? [
          {
            name: 'app-b',
            endpoints: extra.instances.map((x) => ({ address: `127.0.0.1:${x.port}`, labels: { app: 'b' } })),
            healthCheck: fastCheck,
          },
        ]
      : [],
    managementServer: {
      url: hubUrl(),
      // The gateway's SVID is its hub credential: the hub maps spiffe://.../gateway/<name> to id <name>.
      tls: { ca: ca.cert, cert: cert.cert, key: cert.key },
      reportInterval: '1s',
      ...(ew ? { eastWest: { address: ew, tls: { ca: ca.cert, cert: cert.cert, key: cert.key } } } : {}),
    },
  };
}

describe('multi-cluster operations: hub crash, active-passive, replicas, no ping-pong', () => {
  beforeAll(async () => {
    ca = new TestCa('Mesh CA');
    const hubCert = ca.issue({ cn: 'hub', san: ['DNS:localhost', 'IP:127.0.0.1'], eku: 'serverAuth' });
    const operator = ca.issue({ cn: 'operator', eku: 'clientAuth' });
    ops = new Agent({
      connect: { ca: readFileSync(ca.cert), cert: readFileSync(operator.cert), key: readFileSync(operator.key) },
    });
    const dir = tempDir('meridian-mc-ops-');
    hubPort = await closedPort();
    hubFile = join(dir, 'hub.yaml');
    hubState = join(dir, 'hub-state');
    writeFileSync(
      hubFile,
      stringify({
        hub: { address: `127.0.0.1:${hubPort}`, tls: { cert: hubCert.cert, key: hubCert.key, clientCa: ca.cert } },
        virtualDestinations: [
          { name: 'app-b', host: HOST, selector: { app: 'b' }, healthCheck: fastCheck },
          {
            name: 'app-p',
            host: HOST_P,
            selector: { app: 'b' },
            failover: { order: ['c-b', 'c-a'] },
            healthCheck: fastCheck,
          },
        ],
      }),
    );
    hubProc = await spawnHub();
    await Promise.all(
      sites.map(async (site) => {
        for (let i = 1; i <= 2; i++) site.instances.push(new Instance(`${site.name}/${i}`, await closedPort()));
        await Promise.all(site.instances.map((x) => x.start()));
        site.cert = ca.issue({
          cn: site.name,
          san: ['DNS:*.mesh.internal', 'IP:127.0.0.1', `URI:spiffe://mesh.internal/gateway/${site.name}`],
          eku: 'serverAuth,clientAuth',
        });
        site.eastWest = `127.0.0.1:${await closedPort()}`;
        site.gw = await spawnGateway(
          gatewayConfig(
            site.name,
            site.cert,
            { region: site.region, zone: site.zone },
            { instances: site.instances, eastWest: site.eastWest },
          ),
        );
      }),
    );
    // Replicas: one config file and one certificate, two processes with their own state dirs
    // (listeners and admin on port 0, so each process gets its own ports).
    const rCert = ca.issue({
      cn: 'c-r',
      san: ['DNS:*.mesh.internal', 'IP:127.0.0.1', 'URI:spiffe://mesh.internal/gateway/c-r'],
      eku: 'serverAuth,clientAuth',
    });
    const rDir = tempDir('meridian-mc-replica-');
    const rFile = writeConfig(gatewayConfig('c-r', rCert, { region: 'us-east', zone: 'zone-c' }, {}), rDir);
    for (const i of [1, 2]) replicas.push(await spawnGateway(rFile, { stateDir: join(rDir, `state-${i}`) }));
    await waitFor(
      async () => {
        const f = await fleet();
        return (
          f.gateways.length === 4 &&
          f.gateways.every((g) => g.connected && g.inSync) &&
          f.gateways.find((g) => g.id === 'c-r')?.replicas === 2
        );
      },
      20_000,
      100,
    );
  }, 90_000);

  afterAll(async () => {
    await Promise.all(allGateways().map((gw) => stopGateway(gw)));
    if (hubProc && hubProc.proc.exitCode === null && hubProc.proc.signalCode === null) {
      hubProc.proc.kill('SIGTERM');
      if (!(await Promise.race([hubProc.exited.then(() => true), sleep(5000).then(() => false)])))
        hubProc.proc.kill('SIGKILL');
    }
    await Promise.all(sites.flatMap((s) => s.instances.map((x) => x.stop())));
    await ops?.close();
  }, 60_000);

  it('authenticates every gateway by its SPIFFE certificate and shows replicas as one entry', async () => {
    const byId = await fleetById();
    expect(Object.keys(byId).sort()).toEqual(['c-a', 'c-b', 'c-c', 'c-r']);
    for (const id of ['c-a', 'c-b', 'c-c']) {
      expect(byId[id]).toMatchObject({
        identity: `spiffe://mesh.internal/gateway/${id}`,
        connected: true,
        replicas: 1,
        inSync: true,
        instances: 2,
      });
    }
    expect(byId['c-r']).toMatchObject({
      identity: 'spiffe://mesh.internal/gateway/c-r',
      connected: true,
      replicas: 2,
      inSync: true,
      instances: 0,
    });
  });

  it('hub SIGKILLed during concurrent traffic: zero failures, and a change after its restart reaches every gateway', async () => {
    const before = await hubApi('/config');
    expect(await settleOn(A.gw!, HOST, 'c-a')).toEqual({ 'c-a': 100 });
    const traffic = load(A.gw!, HOST, 3000, 10);
    // And across a cluster boundary: c-c serves the active-passive destination from c-b over mTLS.
    const crossTraffic = load(C.gw!, HOST_P, 3000, 5);
    await sleep(800);
    hubProc!.proc.kill('SIGKILL');
    expect(await hubProc!.exited).toBe(-1);
    const [local, cross] = await Promise.all([traffic, crossTraffic]);
    console.log(
      `during hub SIGKILL: ${local.requests} local requests (10 loops), ${cross.requests} cross-cluster requests (5 loops)`,
    );
    expect({ non2xx: local.non2xx, errors: local.errors, failures: local.failures }).toEqual({
      non2xx: 0,
      errors: 0,
      failures: [],
    });
    expect(local.by).toEqual({ 'c-a': local.requests });
    expect(local.requests).toBeGreaterThan(100);
    expect({ non2xx: cross.non2xx, errors: cross.errors, failures: cross.failures }).toEqual({
      non2xx: 0,
      errors: 0,
      failures: [],
    });
    expect(cross.by).toEqual({ 'c-b': cross.requests });
    // The gateways noticed the hub is gone, and still serve.
    for (const gw of allGateways()) {
      await waitFor(async () => (await ready(gw)).managementServer?.connected === false, 10_000, 50);
      expect((await text(`${gw.url}/nothing-here`)).status).toBe(404);
    }
    expect(await shares(B.gw!, HOST, 20)).toEqual({ 'c-b': 20 });

    // Restarted from the same state dir: the same fleet document and version, every gateway back.
    hubProc = await spawnHub();
    const after = await hubApi('/config');
    expect(after.headers.etag).toBe(before.headers.etag);
    expect(after.body).toEqual(before.body);
    await waitFor(
      async () => {
        const f = await fleet();
        return (
          f.gateways.length === 4 &&
          f.gateways.every((g) => g.connected) &&
          f.gateways.find((g) => g.id === 'c-r')?.replicas === 2
        );
      },
      30_000,
      100,
    );
    const { version, byId } = await putRouteAndWaitEverywhere('after-restart', 'hello after the hub restart');
    for (const g of Object.values(byId) as any[])
      expect(g).toMatchObject({ lastAck: { version }, lastSent: { version }, inSync: true });
    for (const gw of allGateways())
      expect((await ready(gw)).managementServer).toMatchObject({ connected: true, applied: { version } });
  }, 90_000);

  it('active-passive: failover.order sends traffic to the first cluster from every gateway, to the second when it is down, and back', async () => {
    // c-a is second in the order, c-c is not listed: both still prefer c-b over their own instances.
    expect(await settleOn(A.gw!, HOST_P, 'c-b')).toEqual({ 'c-b': 100 });
    expect(await settleOn(C.gw!, HOST_P, 'c-b')).toEqual({ 'c-b': 100 });
    expect(await settleOn(B.gw!, HOST_P, 'c-b')).toEqual({ 'c-b': 100 });
    // The default (closest-first) destination on the same instances stays local.
    expect(await settleOn(A.gw!, HOST, 'c-a')).toEqual({ 'c-a': 100 });

    await Promise.all(B.instances.map((x) => x.stop()));
    expect(await settleOn(A.gw!, HOST_P, 'c-a')).toEqual({ 'c-a': 100 });
    expect(await settleOn(C.gw!, HOST_P, 'c-a')).toEqual({ 'c-a': 100 });
    expect(await settleOn(B.gw!, HOST_P, 'c-a')).toEqual({ 'c-a': 100 });

    await Promise.all(B.instances.map((x) => x.start()));
    expect(await settleOn(A.gw!, HOST_P, 'c-b')).toEqual({ 'c-b': 100 });
    expect(await settleOn(C.gw!, HOST_P, 'c-b')).toEqual({ 'c-b': 100 });
    expect(await settleOn(B.gw!, HOST_P, 'c-b')).toEqual({ 'c-b': 100 });
  }, 90_000);

  it('no ping-pong: an east-west request for a destination whose local instances are down or absent is answered locally, never forwarded', async () => {
    const cert = A.cert!;
    const ew = new Agent({
      connect: {
        ca: readFileSync(ca.cert),
        cert: readFileSync(cert.cert),
        key: readFileSync(cert.key),
        servername: HOST,
      },
    });
    const allInstances = sites.flatMap((s) => s.instances);
    const hits = (path: string) => allInstances.filter((x) => x.paths.includes(path)).map((x) => x.label);
    // What c-a's gateway sends to c-b's east-west listener (mTLS with c-a's SVID, the marker header).
    const inbound = async (path: string) => {
      const r = await request(`https://${B.eastWest}${path}`, {
        dispatcher: ew,
        headers: { host: HOST, 'x-meridian-east-west': 'c-a' },
        headersTimeout: 5000,
        bodyTimeout: 5000,
      });
      return { status: r.statusCode, error: r.headers['x-meridian-error'], body: await r.body.text() };
    };
    const bAdmin = `${B.gw!.admin}/clusters/app-b`;
    const original = (await (await request(bAdmin)).body.json()) as any;
    try {
      // Control: with its instances up, c-b answers an east-west request from its own instances.
      const ok = await inbound('/pp-control');
      expect(ok.status).toBe(200);
      expect(ok.body).toMatch(/^c-b\//);
      expect(hits('/pp-control')).toEqual([ok.body]);

      // 1. Instances reported but all down: c-b's own outbound traffic has moved to c-a (its health
      // checks saw them die and the hub knows), yet the inbound request stays local and fails there.
      // The status is the gateway's connect-failure code (502, x-meridian-error: upstream_connect_failure,
      // see docs/config.md); the local cluster is in panic, so the dead instances are still tried.
      await Promise.all(B.instances.map((x) => x.stop()));
      expect(await settleOn(B.gw!, HOST, 'c-a')).toEqual({ 'c-a': 100 });
      for (let i = 0; i < 10; i++) {
        const r = await inbound(`/pp-down-${i}`);
        expect({ status: r.status, error: r.error }).toEqual({ status: 502, error: 'upstream_connect_failure' });
        expect(hits(`/pp-down-${i}`)).toEqual([]);
      }
      await Promise.all(B.instances.map((x) => x.start()));
      expect(await settleOn(B.gw!, HOST, 'c-b')).toEqual({ 'c-b': 100 });

      // 2. No matching instances at all (a local edit drops the app label; reported within
      // reportInterval): the hub turns c-b's inbound route into a 503 while c-b's outbound goes elsewhere.
      const put = await request(bAdmin, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          ...original,
          endpoints: original.endpoints.map((e: any) => ({ ...e, labels: { app: 'not-b' } })),
        }),
      });
      expect(put.statusCode).toBe(200);
      await put.body.dump();
      await waitFor(async () => (await inbound('/pp-probe')).status === 503, 15_000, 100);
      for (let i = 0; i < 10; i++) {
        const r = await inbound(`/pp-none-${i}`);
        expect({ status: r.status, body: r.body }).toEqual({ status: 503, body: `no instances of ${HOST}\n` });
        expect(hits(`/pp-none-${i}`)).toEqual([]);
      }
      expect(await settleOn(B.gw!, HOST, 'c-a')).toEqual({ 'c-a': 100 });
    } finally {
      await ew.close();
      await Promise.all(B.instances.map((x) => x.start()));
      const restore = await request(bAdmin, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(original),
      });
      await restore.body.dump();
    }
    expect(await settleOn(B.gw!, HOST, 'c-b')).toEqual({ 'c-b': 100 });
  }, 90_000);

  it('replicas sharing one identity apply the same snapshots; a hub change reaches both', async () => {
    const [r1, r2] = replicas as [SpawnedGateway, SpawnedGateway];
    expect(r1.url).not.toBe(r2.url);
    const applied = async () => Promise.all(replicas.map(async (gw) => (await ready(gw)).managementServer));
    let byId = await fleetById();
    const [m1, m2] = await applied();
    expect(m1).toMatchObject({
      connected: true,
      applied: { version: byId['c-r'].lastSent.version, hash: byId['c-r'].lastSent.hash },
    });
    expect(m2.applied).toEqual(m1.applied);
    // The managed part of both replicas' configs is identical.
    const managedOf = async (gw: SpawnedGateway) => {
      const r = await request(`${gw.admin}/config`);
      console.log(`replica ${gw.url}: admin /config ETag ${String(r.headers.etag)}`);
      const cfg = (await r.body.json()) as any;
      return { routes: cfg.routes, clusters: cfg.clusters };
    };
    expect(await managedOf(r2)).toEqual(await managedOf(r1));

    const { version } = await putRouteAndWaitEverywhere('replica-check', 'both replicas');
    byId = await fleetById();
    expect(byId['c-r']).toMatchObject({ replicas: 2, connected: true, inSync: true, lastAck: { version } });
    const [n1, n2] = await applied();
    expect(n1.applied.version).toBe(version);
    expect(n2.applied).toEqual(n1.applied);
    expect(n1.applied).toEqual({ version: byId['c-r'].lastAck.version, hash: byId['c-r'].lastAck.hash });
    expect(await managedOf(r2)).toEqual(await managedOf(r1));

    // /fleet tracks each replica's ack: with replica 2 frozen (SIGSTOP, so it cannot apply anything),
    // replica 1's ack moves `lastAck` but `c-r` is not in sync until replica 2 has acked too.
    const pid = r2.proc.pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      await waitFor(() => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('T'), 5000, 10);
      const put = await hubApi('/routes/while-frozen', {
        method: 'PUT',
        body: { match: { path: { exact: '/while-frozen' } }, directResponse: { status: 200, body: 'frozen' } },
      });
      expect(put.status).toBe(200);
      const v2 = put.body.version as number;
      await waitFor(async () => (await text(`${r1.url}/while-frozen`)).body === 'frozen', 10_000, 50);
      const g = await waitFor(
        async () => {
          const x = (await fleetById())['c-r'];
          return x.lastAck?.version === v2 ? x : undefined;
        },
        10_000,
        50,
      );
      expect(g).toMatchObject({ replicas: 2, connected: true, inSync: false });
      expect(g.replicaAcks).toHaveLength(2);
      expect(g.replicaAcks.map((r: { lastAck?: { version: number } }) => r.lastAck?.version).sort()).toEqual(
        [v2 - 1, v2].sort(),
      );
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const v2 = (await hubApi('/config')).headers.etag;
    await waitFor(async () => `"${(await ready(r2)).managementServer.applied?.version}"` === v2, 15_000, 50);
    const synced = await waitFor(
      async () => {
        const x = (await fleetById())['c-r'];
        return x.inSync ? x : undefined;
      },
      10_000,
      50,
    );
    expect(synced.replicaAcks.every((r: { lastAck?: { version: number } }) => `"${r.lastAck?.version}"` === v2)).toBe(
      true,
    );
    await waitFor(async () => (await text(`${r2.url}/while-frozen`)).body === 'frozen', 10_000, 50);
    const [f1, f2] = await applied();
    expect(f2.applied).toEqual(f1.applied);
  }, 60_000);
});
