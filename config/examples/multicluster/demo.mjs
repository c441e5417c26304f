// npm run demo:multicluster — a hub and three simulated clusters on loopback, each with a gateway and
// two instances of app-b. Traffic enters the us-east/zone-a gateway for app-b.mesh.internal; the demo
// kills and restarts instances and prints which cluster served each second of requests.
import http from 'node:http';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createServer } from 'node:net';
import { stringify } from 'yaml';

const ROOT = resolve(import.meta.dirname, '../../..');
const { startHub } = await import(join(ROOT, 'dist/hub/control-plane.js'));
const dir = mkdtempSync(join(tmpdir(), 'meridian-demo-'));
const HOST = 'app-b.mesh.internal';
const TOKEN = 'demo-fleet-token';
const check = { http: { path: '/' }, interval: '200ms', timeout: '200ms', healthyThreshold: 1, unhealthyThreshold: 1 };
const children = [];

const freePort = () => new Promise((r) => { const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => r(port)); }); });
const openssl = (...args) => execFileSync('openssl', args, { stdio: 'ignore' });

/** A throwaway CA and one certificate per gateway (server and client use: east-west is mTLS). */
function certificates(names) {
  const ca = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', ca.key, '-out', ca.cert, '-days', '1', '-subj', '/CN=Demo Mesh CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  return Object.fromEntries(names.map((n) => {
    const c = { cert: join(dir, `${n}.crt`), key: join(dir, `${n}.key`), csr: join(dir, `${n}.csr`), ext: join(dir, `${n}.ext`) };
    writeFileSync(c.ext, `subjectAltName=DNS:*.mesh.internal,IP:127.0.0.1,URI:spiffe://mesh.internal/gateway/${n}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', c.key, '-out', c.csr, '-subj', `/CN=${n}`);
    openssl('x509', '-req', '-in', c.csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', c.cert, '-days', '1', '-extfile', c.ext);
    return [n, { ...c, ca: ca.cert }];
  }));
}

class Instance {
  constructor(label, port) { Object.assign(this, { label, port }); }
  start() {
    this.server = http.createServer((req, res) => res.end(this.label));
    return new Promise((r) => this.server.listen(this.port, '127.0.0.1', r));
  }
  stop() { this.server.closeAllConnections(); return new Promise((r) => this.server.close(r)); }
}

function startGateway(site, cert, hubUrl) {
  const config = {
    gateway: { name: site.name, workers: 1, accessLog: { enabled: false }, locality: { region: site.region, zone: site.zone }, labels: { cluster: site.name } },
    admin: { address: '127.0.0.1:0' },
    listeners: [
      { name: 'main', address: `127.0.0.1:${site.port}` },
      { name: 'east-west', address: site.eastWest, protocol: 'https', tls: { cert: cert.cert, key: cert.key, ca: cert.ca, requireClientCert: true } },
    ],
    clusters: [{ name: 'app-b', endpoints: site.instances.map((x) => ({ address: `127.0.0.1:${x.port}`, labels: { app: 'b' } })), healthCheck: check }],
    managementServer: { url: hubUrl, token: TOKEN, reportInterval: '2s', eastWest: { address: site.eastWest, tls: { ca: cert.ca, cert: cert.cert, key: cert.key } } },
  };
  const file = join(dir, `${site.name}.yaml`);
  writeFileSync(file, stringify(config));
  const p = spawn(process.execPath, [join(ROOT, 'dist/main.js'), 'start', '-c', file, '--state-dir', join(dir, `${site.name}-state`)], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, MERIDIAN_LOG_LEVEL: 'warn' } });
  children.push(p);
  return new Promise((r) => { p.stdout.on('data', () => {}); setTimeout(r, 0); });
}

async function waitUntil(fn, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await fn().catch(() => false)) return; await new Promise((r) => setTimeout(r, 100)); }
  throw new Error('timed out');
}

function get(port) {
  return new Promise((res) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', headers: { host: HOST } }, (r) => {
      let body = '';
      r.on('data', (d) => { body += d; });
      r.on('end', () => res(r.statusCode === 200 ? body.split('/')[0] : `HTTP ${r.statusCode}`));
    });
    req.on('error', () => res('error'));
  });
}

/** Send requests for `ms`, printing per-second shares by serving cluster. */
async function traffic(port, label, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const counts = {};
    const second = Date.now() + 1000;
    while (Date.now() < second) { const c = await get(port); counts[c] = (counts[c] ?? 0) + 1; await new Promise((r) => setTimeout(r, 10)); }
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    const shares = Object.entries(counts).sort().map(([k, v]) => `${k} ${Math.round((100 * v) / total)}%`).join('  ');
    console.log(`${label.padEnd(42)} ${String(total).padStart(4)} req  ${shares}`);
  }
}

async function main() {
  const sites = [
    { name: 'c-a', region: 'us-east', zone: 'zone-a' },
    { name: 'c-b', region: 'us-east', zone: 'zone-b' },
    { name: 'c-c', region: 'eu-west', zone: 'zone-a' },
  ];
  const certs = certificates(sites.map((s) => s.name));
  const hubPort = await freePort();
  writeFileSync(join(dir, 'hub.yaml'), stringify({
    hub: { address: `127.0.0.1:${hubPort}`, tokens: [{ name: 'fleet', token: TOKEN }] },
    virtualDestinations: [{ name: 'app-b', host: HOST, selector: { app: 'b' }, healthCheck: check }],
  }));
  const hub = await startHub({ configFile: join(dir, 'hub.yaml'), stateDir: join(dir, 'hub-state') });
  console.log(`hub on ${hub.address}; gateways: ${sites.map((s) => `${s.name} (${s.region}/${s.zone})`).join(', ')}`);
  for (const s of sites) {
    s.port = await freePort();
    s.eastWest = `127.0.0.1:${await freePort()}`;
    s.instances = [new Instance(`${s.name}/1`, await freePort()), new Instance(`${s.name}/2`, await freePort())];
    await Promise.all(s.instances.map((x) => x.start()));
    await startGateway(s, certs[s.name], `http://127.0.0.1:${hubPort}`);
  }
  await waitUntil(async () => hub.fleet.list().length === 3 && hub.fleet.list().every((g) => g.inSync));
  const [a, b] = sites;
  console.log(`\nrequests for ${HOST} entering ${a.name} (us-east/zone-a), shares per second by serving cluster:\n`);
  await traffic(a.port, 'all instances healthy', 3000);
  await Promise.all(a.instances.map((x) => x.stop()));
  await traffic(a.port, `killed both ${a.name} instances`, 4000);
  await Promise.all(b.instances.map((x) => x.stop()));
  await traffic(a.port, `killed both ${b.name} instances too`, 4000);
  await Promise.all([...a.instances, ...b.instances].map((x) => x.start()));
  await traffic(a.port, 'restarted all instances', 4000);
  console.log('\n/fleet:', JSON.stringify(hub.fleet.list().map((g) => ({ id: g.id, connected: g.connected, inSync: g.inSync, lastAck: g.lastAck?.version }))));
  await hub.stop();
  for (const s of sites) await Promise.all(s.instances.map((x) => x.stop().catch(() => {})));
}

try {
  await main();
} finally {
  for (const p of children) p.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  rmSync(dir, { recursive: true, force: true });
}
