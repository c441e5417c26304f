// Micro-benchmark of the load balancer's pick and of its rebuild on a health change (dist build).
//   npm run build && node benchmarks/micro/lb-pick.mjs
// Env: BATCHES (200), PICKS (10000 per batch), WARMUP (50 batches), REBUILD_MS (2000 per case),
//      POLICIES (comma list), VARIANTS (full,flat,slow; slow only for round_robin and least_request).
// Each (policy, variant) runs in its own child process, so one policy's JIT feedback (polymorphic call
// sites, deopts) cannot colour another's numbers. Target: < 1 us median per pick.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';

const SELF = fileURLToPath(import.meta.url);
const DIST = new URL('../../dist/', import.meta.url);
const BATCHES = Number(process.env.BATCHES ?? 200);
const PICKS = Number(process.env.PICKS ?? 10000);
const WARMUP = Number(process.env.WARMUP ?? 50);
const REBUILD_MS = Number(process.env.REBUILD_MS ?? 2000);
const POLICIES = (process.env.POLICIES ?? 'round_robin,least_request,random,ring_hash,maglev').split(',');
const VARIANTS = (process.env.VARIANTS ?? 'full,flat,slow').split(',');
const SLOW_START_POLICIES = new Set(['round_robin', 'least_request']);
const TARGET_NS = 1000;
const HOSTS = 1000;
const LOCAL = { region: 'r0', zone: 'r0-z0', subzone: '' };
const FLAG = { FAILED_ACTIVE_HC: 1, DEGRADED_ACTIVE_HC: 2, FAILED_OUTLIER_CHECK: 4 };

// ---------------------------------------------------------------------------------------------
// The cluster: 1000 endpoints, P0 400 / P1 350 / P2 250, spread over 9 localities (3 regions x 3 zones).

/** Priority, locality and health (overlay flags) of endpoint i in the "full" variant. */
function fullLayout(i) {
  const loc = i % 9;
  const locality = { region: `r${Math.floor(loc / 3)}`, zone: `r${Math.floor(loc / 3)}-z${loc % 3}`, subzone: '' };
  if (i < 400)
    return {
      priority: 0,
      locality,
      flags: i % 4 === 0 ? FLAG.FAILED_ACTIVE_HC : i % 4 === 1 ? FLAG.DEGRADED_ACTIVE_HC : 0,
    }; // 200 healthy, 100 degraded
  if (i < 750) return { priority: 1, locality, flags: (i - 400) % 7 === 0 ? 0 : FLAG.FAILED_ACTIVE_HC }; // 50 healthy
  return { priority: 2, locality, flags: (i - 750) % 25 === 0 ? 0 : FLAG.FAILED_ACTIVE_HC }; // 10 healthy
}

/** Expected loads (factor 1.4): healthy P0 70, P1 20, P2 5, degraded P0 5 -> 4 selectors, no panic. */
const FULL_LB = {
  localityWeighted: true,
  localityWeights: [
    { locality: { region: 'r0' }, weight: 3 },
    { locality: { region: 'r1' }, weight: 2 },
    { locality: { region: 'r2' }, weight: 1 },
  ],
  zoneAware: { enabled: true, originShares: { 'r0-z0': 40, 'r0-z1': 30, 'r0-z2': 30 } },
  hashOn: { header: 'x-user' },
};

function variantSetup(variant) {
  // slow: the flat cluster with one host in ten inside its slow-start window for the whole run.
  if (variant === 'slow')
    return { layout: variantSetup('flat').layout, lb: { slowStart: { window: '3600s' } }, slowEvery: 10 };
  if (variant === 'flat')
    return {
      layout: (i) => ({ priority: 0, locality: fullLayout(i).locality, flags: 0 }),
      lb: { hashOn: { header: 'x-user' } },
    };
  return { layout: fullLayout, lb: FULL_LB };
}

function address(i) {
  return `10.0.${Math.floor(i / 250)}.${i % 250}:8080`;
}

/** Validated cluster config (schema defaults applied, exactly as the gateway would see it). */
async function clusterConfig(policy, variant) {
  const { validateConfig } = await import(new URL('config/validate.js', DIST));
  const { layout, lb } = variantSetup(variant);
  const endpoints = Array.from({ length: HOSTS }, (_, i) => {
    const { priority, locality } = layout(i);
    return { address: address(i), priority, locality };
  });
  const hashOn = policy === 'ring_hash' || policy === 'maglev' ? lb.hashOn : undefined;
  const r = validateConfig(
    { gateway: { locality: LOCAL }, clusters: [{ name: 'bench', endpoints, lb: { ...lb, hashOn, policy } }] },
    {},
  );
  if (!r.ok) throw new Error(`invalid benchmark config: ${JSON.stringify(r.errors)}`);
  return r.config.clusters[0];
}

/** The health overlay the primary would send: cluster -> address -> flags. */
function baseOverlay(variant) {
  const { layout } = variantSetup(variant);
  const flags = {};
  for (let i = 0; i < HOSTS; i++) {
    const f = layout(i).flags;
    if (f) flags[address(i)] = f;
  }
  return { bench: flags };
}

/** Hosts as ClusterManager builds them, minus the connection pool and metrics the LB never reads. */
function hosts(config, overlay, variant) {
  const every = variantSetup(variant).slowEvery;
  const joined = performance.now() - 60_000;
  return config.endpoints.map((e, index) => {
    const [hostname, port] = e.address.split(':');
    return {
      address: e.address,
      hostname,
      port: Number(port),
      weight: e.weight,
      priority: e.priority,
      locality: e.locality,
      labels: e.labels,
      index,
      flags: overlay.bench[e.address] ?? 0,
      activeRequests: index % 4,
      healthySince: every && index % every === 0 ? joined : 0,
      cluster: 'bench',
      stats: { requests: 0, errors: 0 },
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Measurement (child process: one policy, one variant).

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))];
}

/** Request contexts as the forwarder passes them: a hash key for ring_hash/maglev, none otherwise. */
function contexts(policy) {
  if (policy !== 'ring_hash' && policy !== 'maglev') return new Array(4096).fill(undefined);
  return Array.from({ length: 4096 }, (_, i) => ({ hashKey: `user-${i * 7919}` }));
}

/** One batch of picks; returns ns per pick. The sum of picked indexes is kept so picks cannot be elided. */
let sink = 0;
function batch(lb, ctxs, n) {
  let acc = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) acc += lb.pick(ctxs[i & 4095]).index;
  const t1 = process.hrtime.bigint();
  sink = (sink + acc) % 1_000_000_007;
  return Number(t1 - t0) / n;
}

/** Rebuild cost: alternate the overlay between the base and one more ejected P0 host, as applyOverlay does. */
function rebuilds(runtime, base) {
  const ejected = { bench: { ...base.bench, [address(2)]: FLAG.FAILED_OUTLIER_CHECK } };
  const ms = [];
  const deadline = performance.now() + REBUILD_MS;
  for (let i = 0; ms.length < 5 || (performance.now() < deadline && ms.length < 200); i++) {
    const t0 = process.hrtime.bigint();
    const changed = runtime.applyOverlay(i % 2 === 0 ? ejected : base);
    const t1 = process.hrtime.bigint();
    if (!changed) throw new Error('overlay did not change any host');
    ms.push(Number(t1 - t0) / 1e6);
  }
  runtime.applyOverlay(base);
  return ms.sort((a, b) => a - b);
}

async function measure(policy, variant) {
  const { ClusterRuntime } = await import(new URL('cluster/cluster-manager.js', DIST));
  const { createLoadBalancer } = await import(new URL('lb/load-balancer.js', DIST));
  const { systemClock, systemRng } = await import(new URL('common/clock.js', DIST));
  const config = await clusterConfig(policy, variant);
  const overlay = baseOverlay(variant);
  const build = (hs) =>
    createLoadBalancer({ hosts: hs, config: config.lb, localLocality: LOCAL, clock: systemClock, rng: systemRng });
  const { HostAges } = await import(new URL('cluster/host-ages.js', DIST));
  const runtime = new ClusterRuntime(config, hosts(config, overlay, variant), build, new HostAges(systemClock));
  const ctxs = contexts(policy);

  let gcs = 0;
  const obs = new PerformanceObserver((list) => {
    gcs += list.getEntries().length;
  });
  for (let i = 0; i < WARMUP; i++) batch(runtime.lb, ctxs, PICKS);
  obs.observe({ entryTypes: ['gc'] });
  const ns = [];
  for (let i = 0; i < BATCHES; i++) ns.push(batch(runtime.lb, ctxs, PICKS));
  await new Promise((r) => setImmediate(r)); // let the observer deliver
  obs.disconnect();
  ns.sort((a, b) => a - b);

  const rb = rebuilds(runtime, overlay);
  const state = runtime.lb.state();
  return {
    policy,
    variant,
    median: percentile(ns, 0.5),
    p99: percentile(ns, 0.99),
    gcs,
    rebuildMedian: percentile(rb, 0.5),
    rebuildMax: rb[rb.length - 1],
    rebuilds: rb.length,
    loads: `${state.healthyPriorityLoad.join('/')} + ${state.degradedPriorityLoad.join('/')}`,
    sink,
  };
}

// ---------------------------------------------------------------------------------------------
// Parent: one child per case, then a markdown table.

function runChild(policy, variant) {
  const r = spawnSync(process.execPath, [SELF, '--child', policy, variant], {
    encoding: 'utf8',
    env: process.env,
    timeout: 60_000,
  });
  if (r.status !== 0)
    throw new Error(`${policy}/${variant} failed (${r.status ?? r.signal}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

function table(rows) {
  const f = (x, d = 0) => x.toFixed(d);
  const lines = [
    `| policy | cluster | median ns/pick | p99 ns/pick | < ${TARGET_NS} ns median | GCs while timing | rebuild median ms | rebuild max ms | priority loads (healthy + degraded) |`,
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.policy} | ${r.variant} | ${f(r.median)} | ${f(r.p99)} | ${r.median < TARGET_NS ? 'yes' : '**no**'} | ${r.gcs} | ${f(r.rebuildMedian, 2)} | ${f(r.rebuildMax, 2)} | ${r.loads} |`,
    );
  }
  return lines.join('\n');
}

async function main() {
  const started = performance.now();
  const rows = [];
  for (const policy of POLICIES) {
    for (const variant of VARIANTS)
      if (variant !== 'slow' || SLOW_START_POLICIES.has(policy)) rows.push(runChild(policy, variant));
  }
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `\n### lb pick · ${new Date().toISOString()} · ${cpus()[0]?.model ?? 'unknown'} · node ${process.version}\n`,
  );
  console.log(
    `${HOSTS} endpoints, ${BATCHES} batches x ${PICKS} picks after ${WARMUP} warm-up batches, one child process per row, ${secs} s total.`,
  );
  console.log(
    'full: P0 400 / P1 350 / P2 250 endpoints over 9 localities (3 regions x 3 zones), unhealthy and degraded hosts (spill to P1, P2 and P0-degraded),',
  );
  console.log(
    'locality-weighted (regions 3:2:1) and zone-aware P0 (gateway in r0-z0; not applied to ring_hash/maglev). flat: one priority, all healthy, no locality features.',
  );
  console.log(
    'slow: flat with lb.slowStart (1 h window) and 100 of the 1000 hosts 60 s into it (EDF re-weighted on every pick, a clock read per pick).',
  );
  console.log(
    'ring_hash/maglev picks carry a hash key (4096 distinct keys); the others pass no context, as the forwarder does.',
  );
  console.log(
    'Rebuild: ClusterRuntime.applyOverlay flipping one P0 host between healthy and outlier-ejected (the whole LB is rebuilt).\n',
  );
  console.log(table(rows));
}

if (process.argv[2] === '--child') {
  measure(process.argv[3], process.argv[4]).then(
    (r) => console.log(JSON.stringify(r)),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
