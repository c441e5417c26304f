// Config propagation: one hub (a separate process), N watching gateways (in-process hub clients
// speaking the real protocol). Measures the time from a hub API change to each gateway's ack as
// recorded by the hub, and the hub's resident memory per connected gateway.
// With REPLICAS=2: two hub processes sharing one real etcd (etcd-server; started here on free ports),
// gateways spread over both (each lists the other as failover), changes made on each replica in turn:
// the time from the PUT on one replica to every gateway's ack, on whichever replica it watches.
// Env: GATEWAYS (50), CHANGES (20), REPLICAS (1 or 2). Run: npm run build && node benchmarks/propagation.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createServer } from 'node:net';

const ROOT = resolve(import.meta.dirname, '..');
process.env.MERIDIAN_LOG_LEVEL ??= 'warn';
const { HubClient } = await import(join(ROOT, 'dist/control/managed/hub-client.js'));
const { systemRng } = await import(join(ROOT, 'dist/common/clock.js'));
const GATEWAYS = Number(process.env.GATEWAYS ?? 50);
const CHANGES = Number(process.env.CHANGES ?? 20);
const REPLICAS = Number(process.env.REPLICAS ?? 1);
const TOKEN = 'bench-fleet-token';

const freePort = () =>
  new Promise((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => r(port));
    });
  });
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** A one-member etcd on free loopback ports, data in `dir` (for REPLICAS=2). */
async function startEtcd(dir) {
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  const proc = spawn(
    'etcd',
    [
      '--name=bench',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=bench=${peerUrl}`,
    ],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(`${url}/health`)
      .then(async (r) => (await r.json()).health === 'true')
      .catch(() => false);
    if (ok) return { proc, url };
    await sleep(50);
  }
  throw new Error('etcd did not start');
}

async function startHubProcess(dir, etcdUrl) {
  const port = await freePort();
  const store = etcdUrl ? { store: { etcd: { endpoints: [etcdUrl], prefix: '/meridian/bench' } } } : {};
  writeFileSync(
    join(dir, 'hub.yaml'),
    JSON.stringify({
      hub: { address: `127.0.0.1:${port}`, tokens: [{ name: 'fleet', token: TOKEN }], ...store },
      clusters: [{ name: 'shared', endpoints: [{ address: '127.0.0.1:9' }] }],
      routes: [{ name: 'shared', match: { path: { prefix: '/' } }, cluster: 'shared' }],
      virtualDestinations: [{ name: 'app', host: 'app.mesh.internal', selector: { app: 'x' } }],
    }),
  );
  const proc = spawn(
    process.execPath,
    [join(ROOT, 'dist/main.js'), 'control-plane', '-c', join(dir, 'hub.yaml'), '--state-dir', join(dir, 'state')],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, MERIDIAN_LOG_LEVEL: 'info' } },
  );
  await new Promise((r, j) => {
    proc.stdout.on('data', (d) => {
      if (String(d).includes('"msg":"ready"')) r();
    });
    proc.on('exit', j);
  });
  return { proc, url: `http://127.0.0.1:${port}` };
}

async function api(url, path, method = 'GET', body) {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  return r.json();
}

function report(i) {
  // Each gateway has two instances of `app`, so every report changes every gateway's virtual destination.
  return {
    labels: { cluster: `c${i}` },
    locality: { region: `r${i % 3}`, zone: `z${i % 9}`, subzone: '' },
    eastWestAddress: `127.0.0.${1 + (i % 200)}:15443`,
    instances: [0, 1].map((k) => ({
      cluster: 'app',
      address: `127.1.${i}.${k + 1}:8080`,
      labels: { app: 'x' },
      healthy: true,
    })),
  };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-prop-'));
  const etcd = REPLICAS > 1 ? await startEtcd(dir) : undefined;
  const hubs = [];
  for (let r = 0; r < REPLICAS; r++) {
    const hubDir = join(dir, `hub-${r}`);
    (await import('node:fs')).mkdirSync(hubDir, { recursive: true });
    hubs.push(await startHubProcess(hubDir, etcd?.url));
  }
  await sleep(300);
  const rssBefore = hubs.reduce((a, h) => a + rssKiB(h.proc.pid), 0);
  const clients = Array.from({ length: GATEWAYS }, (_, i) => {
    const home = hubs[i % hubs.length];
    const others = hubs.filter((h) => h !== home).map((h) => h.url);
    return new HubClient(
      { url: home.url, failoverUrls: others, id: `gw-${i}`, token: TOKEN, reportIntervalMs: 600000 },
      { report: () => report(i), apply: async () => undefined },
      systemRng,
    );
  });
  for (const c of clients) c.start();
  // Every gateway connected to some replica, acknowledged that replica's version `versions[r]`
  // (versions are per replica; with `name`, the version that carries route `name`).
  const allInSync = async (name) => {
    const acked = [];
    for (const h of hubs) {
      if (
        name &&
        (await fetch(`${h.url}/routes/${name}`, { headers: { authorization: `Bearer ${TOKEN}` } })).status !== 200
      )
        return undefined;
      const f = await api(h.url, '/fleet');
      for (const g of f.gateways)
        if (g.connected) {
          if (!(g.lastAck?.version === f.version && g.inSync)) return undefined;
          acked.push(g);
        }
    }
    return acked.length === GATEWAYS ? acked : undefined;
  };
  let fleet;
  const connectDeadline = Date.now() + 30000;
  while (!(fleet = await allInSync())) {
    if (Date.now() > connectDeadline) throw new Error('gateways did not connect');
    await sleep(50);
  }
  await sleep(500);
  const rssAfter = hubs.reduce((a, h) => a + rssKiB(h.proc.pid), 0);
  const samples = [];
  for (let n = 0; n < CHANGES; n++) {
    const writer = hubs[n % hubs.length];
    const t0 = Date.now();
    await api(writer.url, `/routes/change-${n}`, 'PUT', {
      match: { path: { exact: `/c${n}` } },
      directResponse: { status: 200, body: String(n) },
    });
    const deadline = Date.now() + 10000;
    while (!(fleet = await allInSync(`change-${n}`))) {
      if (Date.now() > deadline) throw new Error(`change ${n} did not reach every gateway`);
      await sleep(5);
    }
    for (const g of fleet) samples.push(Date.parse(g.lastAck.at) - t0);
  }
  samples.sort((x, y) => x - y);
  for (const c of clients) c.stop();
  for (const h of hubs) h.proc.kill('SIGTERM');
  etcd?.proc.kill('SIGTERM');
  const perGateway = ((rssAfter - rssBefore) / GATEWAYS).toFixed(1);
  console.log(
    `| hub replicas | gateways | changes | acks | p50 ms | p99 ms | max ms | hub RSS before | hub RSS with gateways | RSS per gateway |`,
  );
  console.log(`|---|---|---|---|---|---|---|---|---|---|`);
  console.log(
    `| ${REPLICAS}${etcd ? ' (etcd)' : ''} | ${GATEWAYS} | ${CHANGES} | ${samples.length} | ${pct(samples, 50)} | ${pct(samples, 99)} | ${samples.at(-1)} | ${(rssBefore / 1024).toFixed(1)} MiB | ${(rssAfter / 1024).toFixed(1)} MiB | ${perGateway} KiB |`,
  );
  console.log(
    `\nTime is from just before the PUT to the hub's record of each gateway's ack (the hub and the clients share one clock); target p99 < 1000 ms.`,
  );
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
