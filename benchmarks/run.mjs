// Meridian beside its baselines, in the same run, interleaved (A B C D A B C D ...).
// Env: DURATION (s, 10), ROUNDS (3), WARMUP (s, 3), CONNECTIONS (100), TOOLS (autocannon,wrk), UPSTREAM_SERVER (nginx if installed, else node),
//      SCENARIOS (plain,jwt,https,ratelimit-local,ratelimit-redis,lb-rr,lb-lr-outlier; also full-chain, tracing-1, tracing-100),
//      APPEND (1; 0 = print the report without appending it to RESULTS.md),
//      VARIANTS (none; "label=path,..." also runs every scenario on the dist/ at each path, as meridian-<scenario>@<label>:
//      an A/B of a change, e.g. a copy of dist/ with one feature cut out, measured beside the baselines in the same rounds).
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, writeFileSync, appendFileSync, existsSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  jwtToken,
  meridianConfig,
  selfSignedCert,
  LB_PORTS,
  usesLbPorts,
  usesRedis,
  usesJwt,
  usesTracing,
  OTLP_SINK_PORT,
  TARGETS,
} from './scenarios.mjs';
import { has, PIN, pinned, start, cpuMicros, cleanup } from './processes.mjs';
import { parseWrk } from './wrk-output.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');
const DURATION = Number(process.env.DURATION ?? 10);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WARMUP = Number(process.env.WARMUP ?? 3);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 100);
const SCENARIOS = (
  process.env.SCENARIOS ?? 'plain,jwt,https,ratelimit-local,ratelimit-redis,lb-rr,lb-lr-outlier'
).split(',');
const APPEND = process.env.APPEND !== '0';
const TOOLS = (process.env.TOOLS ?? 'autocannon,wrk').split(',').filter((t) => t === 'autocannon' || has(t));
const VARIANTS = (process.env.VARIANTS ?? '')
  .split(',')
  .filter(Boolean)
  .map((v) => {
    const [label, path] = v.split('=');
    return { label, dist: resolve(path) };
  });
const UPSTREAM_PORT = 18090;
const UPSTREAM = process.env.UPSTREAM_SERVER ?? (has('nginx') ? 'nginx' : 'node');

function load(tool, url, headers, duration = DURATION) {
  const h = Object.entries(headers ?? {});
  if (tool === 'wrk') {
    const args = [
      '-t1',
      `-c${CONNECTIONS}`,
      `-d${duration}s`,
      '--latency',
      ...h.flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
      url,
    ];
    const [c, a] = pinned(1, 'wrk', args);
    return parseWrk(execFileSync(c, a, { encoding: 'utf8' }));
  }
  const args = [
    join(HERE, 'node_modules/autocannon/autocannon.js'),
    '-c',
    String(CONNECTIONS),
    '-d',
    String(duration),
    '-j',
    ...h.flatMap(([k, v]) => ['-H', `${k}=${v}`]),
    url,
  ];
  const [c, a] = pinned(1, process.execPath, args);
  const r = JSON.parse(
    execFileSync(c, a, { encoding: 'utf8', env: { ...process.env, NODE_TLS_REJECT_UNAUTHORIZED: '0' } }),
  );
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    total: r.requests.total,
    errors: r.errors + r.non2xx,
  };
}

// ---------------------------------------------------------------------------------------------
// Servers: upstream, baselines, Redis (only when a scenario needs it), one Meridian per scenario.

/**
 * One upstream process; the lb-* scenarios' endpoints are extra ports of it. nginx (`return 200`, one
 * process) when installed, as it leaves more of the load core to the load generator; else Node.
 */
function startUpstream(dir) {
  const ports = [UPSTREAM_PORT, ...(SCENARIOS.some(usesLbPorts) ? LB_PORTS : [])];
  if (UPSTREAM === 'nginx') {
    writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, ports));
    return start('upstream', 'nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], {
      core: 1,
      readyPort: UPSTREAM_PORT,
    });
  }
  return start('upstream', process.execPath, [join(HERE, 'servers/upstream.mjs')], {
    env: { PORTS: ports.join(',') },
    core: 1,
  });
}

function nginxConfig(dir, ports) {
  return `daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 10000000; keepalive_timeout 300s; tcp_nodelay on; tcp_nopush on; postpone_output 0;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server {
    ${ports.map((p) => `listen 127.0.0.1:${p};`).join(' ')}
    location / { default_type text/plain; return 200 "${'x'.repeat(100)}"; }
  }
}
`;
}

async function startBaselines() {
  const node = (name, file, port) =>
    start(name, process.execPath, [join(HERE, 'servers', file)], { env: { PORT: String(port) } });
  return [
    { name: 'direct', url: `http://127.0.0.1:${UPSTREAM_PORT}/x`, proc: null },
    { name: 'floor', url: 'http://127.0.0.1:18081/x', proc: await node('floor', 'floor-proxy.mjs', 18081) },
    { name: 'fastify', url: 'http://127.0.0.1:18082/x', proc: await node('fastify', 'fastify-proxy.mjs', 18082) },
  ];
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer()
      .once('error', reject)
      .listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
  });
}

/** A throwaway redis-server (no persistence) on a free port, pinned with the load; returns its URL. */
async function startRedis(dir) {
  if (!has('redis-server')) throw new Error('redis-server is not installed');
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  await start('redis', 'redis-server', args, { core: 1, ready: /Ready to accept connections/ });
  return `redis://127.0.0.1:${port}`;
}

/** What the scenarios need besides their config: a certificate, a Redis URL (or why there is none). */
async function scenarioMaterial(dir) {
  const material = {};
  if (SCENARIOS.includes('https')) material.cert = selfSignedCert(dir);
  if (SCENARIOS.some(usesTracing)) {
    await start('otlp-sink', process.execPath, [join(HERE, 'servers', 'otlp-sink.mjs')], {
      env: { PORT: String(OTLP_SINK_PORT) },
      core: 1,
    });
  }
  if (SCENARIOS.some(usesRedis))
    material.redisUrl = await startRedis(dir).catch((e) => {
      material.redisError = e.message;
      return undefined;
    });
  return material;
}

/** Start one Meridian process for a scenario; null (and a message) when it cannot run. */
async function startMeridian(s, port, dir, material, variant = { label: '', dist: join(ROOT, 'dist') }) {
  const name = `meridian-${s}${variant.label ? `@${variant.label}` : ''}`;
  if (usesRedis(s) && !material.redisUrl) {
    console.error(`skipping ${s}: ${material.redisError}`);
    return null;
  }
  const file = join(dir, `${s}.json`);
  writeFileSync(file, JSON.stringify(await meridianConfig(s, port, material)));
  const args = [join(variant.dist, 'main.js'), 'start', '-c', file, '--state-dir', join(dir, `state-${name}`)];
  const proc = await start(name, process.execPath, args, { env: { MERIDIAN_LOG_LEVEL: 'info' } }).catch((e) => {
    console.error(`skipping ${s}: ${e.message}`);
    return null;
  });
  if (!proc) return null;
  return {
    name,
    url: `${s === 'https' ? 'https' : 'http'}://127.0.0.1:${port}/x`,
    proc,
    headers: usesJwt(s) ? { authorization: `Bearer ${await jwtToken()}` } : undefined,
    tools: s === 'https' ? ['wrk'] : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Load, interleaved round by round; then medians, ratios and targets.

function measure(targets) {
  const results = {};
  for (const tool of TOOLS) {
    // Unmeasured: the first seconds of a fresh process are JIT warm-up, not steady state.
    if (WARMUP > 0)
      for (const t of targets) if (!t.tools || t.tools.includes(tool)) load(tool, t.url, t.headers, WARMUP);
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        if (t.tools && !t.tools.includes(tool)) continue;
        const before = t.proc ? cpuMicros(t.proc.pid) : 0;
        const r = load(tool, t.url, t.headers);
        if (r.total === 0)
          throw new Error(
            `${t.name} served no request in ${tool} round ${round + 1}: a stalled target invalidates the run`,
          );
        r.cpuPerReq = t.proc ? (cpuMicros(t.proc.pid) - before) / r.total : 0;
        (results[`${tool}|${t.name}`] ??= []).push(r);
        console.error(
          `${tool} round ${round + 1} ${t.name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99} ms, ${r.cpuPerReq.toFixed(1)} us/req cpu, ${r.errors} errors`,
        );
      }
    }
  }
  return results;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** tool -> target -> medians over rounds (errors summed). */
function summarize(results) {
  const byTool = {};
  for (const [k, runs] of Object.entries(results)) {
    const [tool, name] = k.split('|');
    const m = {
      runs,
      rps: median(runs.map((r) => r.rps)),
      p50: median(runs.map((r) => r.p50)),
      p99: median(runs.map((r) => r.p99)),
      cpu: median(runs.map((r) => r.cpuPerReq)),
      errors: runs.reduce((s, r) => s + r.errors, 0),
    };
    (byTool[tool] ??= {})[name] = m;
  }
  return byTool;
}

/**
 * Median over rounds of a's value / b's value in the same round. Paired: this VM's speed drifts over
 * tens of seconds, and targets of one round run back to back, so per-round ratios are far steadier
 * than a ratio of medians.
 */
function paired(a, b, field) {
  if (!a || !b) return undefined;
  const xs = a.runs.map((r, i) => r[field] / b.runs[i]?.[field]).filter((x) => Number.isFinite(x) && x > 0);
  return xs.length ? median(xs) : undefined;
}

/** Paired ratio to 2 decimals, or '-'. */
const ratio = (a, b, field) => paired(a, b, field)?.toFixed(2) ?? '-';

function resultRows(byTool) {
  const rows = [];
  for (const [tool, t] of Object.entries(byTool)) {
    const plain = t['meridian-plain'];
    for (const [name, m] of Object.entries(t)) {
      const vsPlain =
        name.startsWith('meridian-') && plain ? [ratio(m, plain, 'rps'), ratio(m, plain, 'cpuPerReq')] : ['-', '-'];
      rows.push(
        `| ${tool} | ${name} | ${m.rps.toFixed(0)} | ${m.p50} | ${m.p99} | ${m.cpu ? m.cpu.toFixed(1) : '-'} | ${ratio(m, t.fastify, 'rps')} | ${ratio(m, t.floor, 'cpuPerReq')} | ${vsPlain[0]} | ${vsPlain[1]} | ${m.errors} |`,
      );
    }
  }
  return rows;
}

const pct = (x) => `${(100 * x).toFixed(1)} %`;

/** One row per target whose scenario and baseline both ran: throughput cost and CPU/request cost. */
function targetRows(byTool) {
  const rows = [];
  for (const [tool, t] of Object.entries(byTool)) {
    for (const { scenario, base, maxCost } of TARGETS) {
      const m = t[`meridian-${scenario}`];
      const b = t[`meridian-${base}`];
      if (!m || !b) continue;
      const cost = 1 - paired(m, b, 'rps');
      const cpuRatio = paired(m, b, 'cpuPerReq');
      const cpuCost = cpuRatio ? pct(cpuRatio - 1) : '-';
      const met = m.errors + b.errors > 0 ? 'no (errors)' : cost < maxCost ? 'yes' : 'no';
      rows.push(`| ${tool} | ${scenario} | ${base} | ${pct(cost)} | ${cpuCost} | < ${pct(maxCost)} | ${met} |`);
    }
  }
  return rows;
}

function report(byTool) {
  const cpu = cpus()[0]?.model ?? 'unknown';
  const setup = `DURATION=${DURATION}s ROUNDS=${ROUNDS} (medians, after a ${WARMUP}s unmeasured warm-up per target) CONNECTIONS=${CONNECTIONS}, one Meridian worker, 100-byte responses from a ${UPSTREAM} upstream, lb-* scenarios over ${LB_PORTS.length} endpoints (ports of one upstream process), proxies pinned to core 0 and load + upstream + Redis to core 1: ${PIN}.`;
  const results = [
    'Absolute columns are medians over rounds; ratio columns are medians of per-round ratios (paired).',
    '',
    '| tool | target | req/s | p50 ms | p99 ms | proxy CPU us/req | req/s vs fastify | CPU vs floor | req/s vs plain | CPU vs plain | errors |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...resultRows(byTool),
  ];
  const targets = targetRows(byTool);
  const targetTable =
    targets.length === 0
      ? []
      : [
          '',
          'Targets (throughput cost = 1 - median over rounds of req/s / baseline req/s in the same round; autocannon is bounded by the load generator, wrk is the precise one):',
          '',
          '| tool | scenario | baseline | throughput cost | CPU/req cost | target | met |',
          '|---|---|---|---|---|---|---|',
          ...targets,
        ];
  return [
    `\n## ${new Date().toISOString()} · ${cpus().length} cores · ${cpu} · node ${process.version}`,
    '',
    setup,
    '',
    ...results,
    ...targetTable,
    '',
  ].join('\n');
}

async function main() {
  if (!existsSync(join(ROOT, 'dist/main.js')))
    throw new Error('build Meridian first: npm run build (in the repo root)');
  const dir = mkdtempSync(join(tmpdir(), 'meridian-bench-'));
  await startUpstream(dir);
  const targets = await startBaselines();
  const material = await scenarioMaterial(dir);
  let port = 18100;
  for (const s of SCENARIOS) {
    const target = await startMeridian(s, port++, dir, material);
    if (target) targets.push(target);
    for (const v of VARIANTS) {
      const t = await startMeridian(s, port++, dir, material, v);
      if (t) targets.push(t);
    }
  }
  const text = report(summarize(measure(targets)));
  console.log(text);
  if (APPEND) appendFileSync(join(HERE, 'RESULTS.md'), text);
  cleanup();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
