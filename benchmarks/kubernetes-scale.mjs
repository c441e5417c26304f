// Kubernetes discovery at scale: 10,000 endpoints in 100 EndpointSlices of one Service, then 1,000 pods
// replaced (10 per slice, every slice modified in one burst). How long until every worker runs the new
// set, and what an unrelated route sees meanwhile. One gateway (2 workers, a separate process), one
// upstream, and a minimal list/watch API server in this process (plain HTTP, the real JSON: an
// EndpointSliceList with resourceVersion, then watch event lines) -- the stand-in the tests use is TLS
// and TypeScript; this one is the same wire format without TLS.
// Env: WORKERS (2), SLICES (100), PER_SLICE (100), REPLACED_PER_SLICE (10), CONCURRENCY (10).
// Run: npm run build && node benchmarks/kubernetes-scale.mjs
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { freePort, sleep, pct, phaseLoad } from './phase-load.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const WORKERS = Number(process.env.WORKERS ?? 2);
const SLICES = Number(process.env.SLICES ?? 100);
const PER_SLICE = Number(process.env.PER_SLICE ?? 100);
const REPLACED = Number(process.env.REPLACED_PER_SLICE ?? 10);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 10);

// --- the list/watch API server ---
let rv = 1000;
const slices = new Map();
const watches = new Set();
const sliceOf = (i, generation) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: {
    name: `web-${i}`,
    namespace: 'shop',
    resourceVersion: String(++rv),
    labels: { 'kubernetes.io/service-name': 'web', app: 'web' },
  },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: Array.from({ length: PER_SLICE }, (_, j) => {
    const g = j < REPLACED ? generation : 0;
    return {
      addresses: [`10.${100 + g}.${i}.${j}`],
      conditions: { ready: true, serving: true, terminating: false },
      zone: `zone-${j % 3}`,
      targetRef: { kind: 'Pod', namespace: 'shop', name: `web-${g}-${i}-${j}` },
    };
  }),
});
const api = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (!url.pathname.endsWith('/endpointslices')) return res.writeHead(404).end();
  if (url.searchParams.get('watch') !== '1' && url.searchParams.get('watch') !== 'true') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(
      JSON.stringify({
        kind: 'EndpointSliceList',
        apiVersion: 'discovery.k8s.io/v1',
        metadata: { resourceVersion: String(rv) },
        items: [...slices.values()],
      }),
    );
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  watches.add(res);
  req.on('close', () => watches.delete(res));
});
const apiPort = await freePort();
await new Promise((r) => api.listen(apiPort, '127.0.0.1', r));
for (let i = 0; i < SLICES; i++) slices.set(i, sliceOf(i, 0));

// --- gateway and upstream ---
const upPort = await freePort();
const upstream = spawn(
  process.execPath,
  ['-e', `require('http').createServer((q, s) => s.end('ok')).listen(${upPort}, '127.0.0.1')`],
  {
    stdio: 'ignore',
  },
);
const dir = mkdtempSync(join(tmpdir(), 'meridian-k8s-scale-'));
writeFileSync(
  join(dir, 'kubeconfig'),
  JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'bench',
    clusters: [{ name: 'bench', cluster: { server: `http://127.0.0.1:${apiPort}`, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'bench', user: { token: 'bench' } }],
    contexts: [{ name: 'bench', context: { cluster: 'bench', user: 'bench' } }],
  }),
);
const [gwPort, adminPort] = [await freePort(), await freePort()];
writeFileSync(
  join(dir, 'gateway.yaml'),
  JSON.stringify({
    gateway: {
      name: 'k8s-scale',
      workers: WORKERS,
      accessLog: { enabled: false },
      kubernetes: { kubeconfig: join(dir, 'kubeconfig') },
    },
    admin: { address: `127.0.0.1:${adminPort}` },
    listeners: [{ name: 'main', address: `127.0.0.1:${gwPort}`, protocol: 'http' }],
    routes: [
      { name: 'unrelated', match: { path: { prefix: '/unrelated' } }, cluster: 'app' },
      { name: 'web', match: { path: { prefix: '/web' } }, cluster: 'web' },
    ],
    clusters: [
      { name: 'app', endpoints: [{ address: `127.0.0.1:${upPort}` }] },
      { name: 'web', discovery: { kubernetes: { namespace: 'shop', service: 'web', port: 'http' } } },
    ],
  }),
);
const t0 = performance.now();
const gw = spawn(
  process.execPath,
  [join(ROOT, 'dist/main.js'), 'start', '-c', join(dir, 'gateway.yaml'), '--state-dir', join(dir, 'state')],
  { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, MERIDIAN_LOG_LEVEL: 'info' } },
);
// The publisher logs "change applied by every worker" once every worker acknowledged a change: when it
// arrives, every worker converged.
const applied = [];
let ready;
const readyP = new Promise((r) => (ready = r));
{
  let buf = '';
  gw.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.includes('change applied by every worker')) applied.push({ at: performance.now(), ...JSON.parse(line) });
      if (line.includes('"msg":"ready"')) ready();
    }
  });
}
await Promise.race([
  readyP,
  sleep(30000).then(() => {
    throw new Error('gateway not ready');
  }),
]);
const startMs = performance.now() - t0;
const status = async () => await (await request(`http://127.0.0.1:${adminPort}/clusters/web/status`)).body.json();
const initial = await status();

// --- load on the unrelated route ---
const load = phaseLoad(`http://127.0.0.1:${gwPort}/unrelated`, CONCURRENCY, 'steady');
await sleep(1000);

// --- 1,000 pods replaced: every slice modified in one burst ---
const rounds = [];
for (let round = 1; round <= 3; round++) {
  load.phase = `replace ${round}`;
  const before = applied.length;
  const tChange = performance.now();
  for (let i = 0; i < SLICES; i++) {
    const s = sliceOf(i, round);
    slices.set(i, s);
    const line = `${JSON.stringify({ type: 'MODIFIED', object: s })}\n`;
    for (const w of watches) w.write(line);
  }
  const burstMs = performance.now() - tChange;
  const deadline = Date.now() + 10_000;
  // Converged: the last set handed reaches every worker (a burst may be handed in more than one piece).
  while (Date.now() < deadline) {
    await sleep(20);
    const st = await status();
    if (
      st.endpoints.length === SLICES * PER_SLICE &&
      st.endpoints.filter((e) => e.address.startsWith(`10.${100 + round}.`)).length === SLICES * REPLACED
    )
      break;
  }
  const after = applied.slice(before);
  rounds.push({
    round,
    burstMs,
    convergedMs: after.length ? after.at(-1).at - tChange : NaN,
    changes: after.length,
    workersMs: after.map((a) => a.workersMs).join('+'),
    kinds: [...new Set(after.map((a) => a.kind))].join(', '),
  });
  load.phase = 'between';
  await sleep(1500);
}
await load.stop();
gw.kill('SIGTERM');
upstream.kill();
api.closeAllConnections();
api.close();

console.log(
  `\n## ${new Date().toISOString()} · kubernetes discovery scale · ${WORKERS} workers · node ${process.version}\n`,
);
console.log(
  `\`node benchmarks/kubernetes-scale.mjs\` (SLICES=${SLICES}, PER_SLICE=${PER_SLICE}, REPLACED_PER_SLICE=${REPLACED}, CONCURRENCY=${CONCURRENCY}): ${SLICES * PER_SLICE} endpoints; gateway start to ready (first list applied) ${startMs.toFixed(0)} ms, ${initial.endpoints.length} endpoints at ready.\n`,
);
console.log(
  '| round | pods replaced | burst written ms | converged on every worker ms | changes published | workers ms (each) | kind | unrelated p50 ms | p99 ms | max ms | requests | errors |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rounds) {
  const s = load.of(`replace ${r.round}`);
  console.log(
    `| ${r.round} | ${SLICES * REPLACED} | ${r.burstMs.toFixed(0)} | ${r.convergedMs.toFixed(0)} | ${r.changes} | ${r.workersMs} | ${r.kinds} | ${pct(s.lat, 50).toFixed(1)} | ${pct(s.lat, 99).toFixed(1)} | ${Math.max(...s.lat).toFixed(0)} | ${s.lat.length} | ${s.errors} |`,
  );
}
process.exit(0);
