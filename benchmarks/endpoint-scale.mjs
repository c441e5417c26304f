// Endpoint scale: how long a big endpoint set takes to reach every worker, what it costs each worker in
// memory, and what an unrelated route sees meanwhile. One gateway (2 workers, a separate process), one
// upstream process; a load loop on /unrelated runs through every phase.
// Env: WORKERS (2), SIZES ("1000,10000,100000"), CONCURRENCY (10).
// Run: npm run build && node benchmarks/endpoint-scale.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, sleep, pct, phaseLoad } from './phase-load.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const WORKERS = Number(process.env.WORKERS ?? 2);
const SIZES = (process.env.SIZES ?? '1000,10000,100000').split(',').map(Number);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 10);

const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const childrenOf = (ppid) =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === ppid;
      } catch {
        return false;
      }
    })
    .map(Number);

const upPort = await freePort();
const upstream = spawn(
  process.execPath,
  ['-e', `require('http').createServer((q, s) => s.end('ok')).listen(${upPort}, '127.0.0.1')`],
  {
    stdio: 'ignore',
  },
);
const dir = mkdtempSync(join(tmpdir(), 'meridian-endpoint-scale-'));
const [gwPort, adminPort] = [await freePort(), await freePort()];
writeFileSync(
  join(dir, 'gateway.yaml'),
  JSON.stringify({
    gateway: { name: 'scale', workers: WORKERS, accessLog: { enabled: false } },
    admin: { address: `127.0.0.1:${adminPort}` },
    listeners: [{ name: 'main', address: `127.0.0.1:${gwPort}`, protocol: 'http' }],
    routes: [
      { name: 'unrelated', match: { path: { prefix: '/unrelated' } }, cluster: 'app' },
      { name: 'huge', match: { path: { prefix: '/huge' } }, cluster: 'huge' },
    ],
    clusters: [
      { name: 'app', endpoints: [{ address: `127.0.0.1:${upPort}` }] },
      { name: 'huge', endpoints: [{ address: '10.255.255.1:80' }] },
    ],
  }),
);
const gw = spawn(
  process.execPath,
  [join(ROOT, 'dist/main.js'), 'start', '-c', join(dir, 'gateway.yaml'), '--state-dir', join(dir, 'state')],
  { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, MERIDIAN_LOG_LEVEL: 'info' } },
);
// The publisher logs how long each change took from broadcast to every worker's acknowledgement
// ("change applied by every worker", workersMs): the workers' part of a change, without the primary's
// validation and persistence. Keep draining stdout so the gateway never blocks on it.
let workersMs = [];
{
  let buf = '';
  gw.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.includes('change applied by every worker')) workersMs.push(JSON.parse(line).workersMs);
    }
  });
}
await new Promise((r, j) => {
  gw.stdout.on('data', (d) => {
    if (String(d).includes('"msg":"ready"')) r();
  });
  gw.on('exit', j);
  setTimeout(() => j(new Error('gateway did not start')), 20000);
}).catch((e) => {
  gw.kill();
  upstream.kill();
  throw e;
});
await sleep(500);
const workers = childrenOf(gw.pid).filter((p) => p !== upstream.pid);

// The load on the unrelated route: latencies and errors, tagged by the phase they fell in.
const load = phaseLoad(`http://127.0.0.1:${gwPort}/unrelated`, CONCURRENCY, 'warm-up');

const endpoints = (n, salt) =>
  Array.from({ length: n }, (_, i) => ({
    address: `10.${(salt + (i >> 16)) & 255}.${(i >> 8) & 255}.${i & 255}:8080`,
  }));
const rows = [];
await sleep(1000);
for (const n of SIZES) {
  for (const [label, salt] of [
    [`${n} endpoints`, 1],
    [`${n} endpoints replaced`, 101],
  ]) {
    const before = workers.map(rssMiB);
    load.phase = label;
    const body = JSON.stringify({ endpoints: endpoints(n, salt) });
    workersMs = [];
    const t0 = performance.now();
    const r = await fetch(`http://127.0.0.1:${adminPort}/clusters/huge`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body,
    });
    const applyMs = performance.now() - t0;
    const status = r.status;
    await r.text();
    await sleep(1000);
    load.phase = 'between';
    const after = workers.map(rssMiB);
    const s = load.of(label);
    rows.push({
      label,
      bytes: body.length,
      status,
      applyMs,
      workersMs: workersMs.join('+') || '-',
      extraMiB: Math.max(...after.map((a, i) => a - before[i])),
      rssMiB: Math.max(...after),
      p50: pct(s.lat, 50),
      p99: pct(s.lat, 99),
      max: Math.max(...s.lat),
      requests: s.lat.length,
      errors: s.errors,
    });
    await sleep(500);
  }
  // Part of a big set changed (1,000 endpoints swapped for new ones; the rest stay), then one endpoint
  // reweighted through the endpoint resource: both are endpoint deltas for the workers.
  const timed = async (label, url, init) => {
    const before = workers.map(rssMiB);
    load.phase = label;
    workersMs = [];
    const t0 = performance.now();
    const r = await fetch(url, init);
    const applyMs = performance.now() - t0;
    await r.text();
    await sleep(1000);
    load.phase = 'between';
    const s = load.of(label);
    rows.push({
      label,
      bytes: String(init.body ?? '').length,
      status: r.status,
      applyMs,
      workersMs: workersMs.join('+') || '-',
      extraMiB: Math.max(...workers.map(rssMiB).map((a, i) => a - before[i])),
      rssMiB: Math.max(...workers.map(rssMiB)),
      p50: pct(s.lat, 50),
      p99: pct(s.lat, 99),
      max: Math.max(...s.lat),
      requests: s.lat.length,
      errors: s.errors,
    });
    await sleep(500);
  };
  if (n > 1000) {
    const eps = endpoints(n, 101);
    eps.splice(0, 1000, ...endpoints(1000, 201));
    await timed(`1000 of ${n} endpoints changed`, `http://127.0.0.1:${adminPort}/clusters/huge`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ endpoints: eps }),
    });
  }
  const first = endpoints(1, n > 1000 ? 201 : 101)[0].address;
  await timed(`1 endpoint of ${n} reweighted`, `http://127.0.0.1:${adminPort}/clusters/huge/endpoints/${first}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: '{"weight":2}',
  });
  // A change elsewhere (a new route) while the big cluster stands: what it costs now.
  {
    const label = `a route added beside ${n} endpoints`;
    load.phase = label;
    workersMs = [];
    const t0 = performance.now();
    const r = await fetch(`http://127.0.0.1:${adminPort}/routes/extra-${n}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ match: { path: { exact: `/extra-${n}` } }, directResponse: { status: 200 } }),
    });
    const applyMs = performance.now() - t0;
    await r.text();
    await sleep(1000);
    load.phase = 'between';
    const s = load.of(label);
    rows.push({
      label,
      bytes: 0,
      status: r.status,
      applyMs,
      workersMs: workersMs.join('+') || '-',
      extraMiB: 0,
      rssMiB: Math.max(...workers.map(rssMiB)),
      p50: pct(s.lat, 50),
      p99: pct(s.lat, 99),
      max: Math.max(...s.lat),
      requests: s.lat.length,
      errors: s.errors,
    });
  }
}
await load.stop();
gw.kill('SIGTERM');
upstream.kill();

console.log(`\n## ${new Date().toISOString()} · endpoint scale · ${WORKERS} workers · node ${process.version}\n`);
console.log(
  `\`node benchmarks/endpoint-scale.mjs\` (SIZES=${SIZES.join(',')}, CONCURRENCY=${CONCURRENCY}): PUT /clusters/huge answered once every worker applied it (apply ms: the whole PUT; workers ms: broadcast to the last worker's acknowledgement, as the publisher logs it); the unrelated route's latency and errors are measured over the PUT and the second after it.\n`,
);
console.log(
  '| change | body | status | apply ms | workers ms | extra RSS per worker MiB | worker RSS MiB | unrelated p50 ms | p99 ms | max ms | requests | errors |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows)
  console.log(
    `| ${r.label} | ${(r.bytes / 1e6).toFixed(2)} MB | ${r.status} | ${r.applyMs.toFixed(0)} | ${r.workersMs} | ${r.extraMiB.toFixed(0)} | ${r.rssMiB.toFixed(0)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(0)} | ${r.requests} | ${r.errors} |`,
  );
process.exit(0);
