// HTTP/2 downstream: Meridian (one worker) over h2c with prior knowledge and h2 over TLS (ALPN),
// beside HTTP/1.1 at the same load size for reference, in the same run, interleaved round by round.
// Load tools: h2load (nghttp2-client; precise, C), node (./h2load.mjs on node:http2; bounded by the
// load generator, for machines without h2load), wrk (HTTP/1.1 reference, as run.mjs; autocannon when
// wrk is missing).
// Env: DURATION (s, 10), ROUNDS (3), CONNECTIONS (10 HTTP/2 sessions), STREAMS (10 in flight per
//      session; HTTP/1.1 rows get CONNECTIONS x STREAMS connections), TOOLS (h2load,node,wrk),
//      WARMUP (s, 2: each protocol and listener once before round 1, not measured),
//      APPEND (1; 0 = print the report without appending it to RESULTS.md).
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, appendFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { meridianConfig, selfSignedCert } from './scenarios.mjs';
import { createHistogram, record, percentile } from './h2load.mjs';
import { has, PIN, pinned, start, cpuMicros, cleanup } from './processes.mjs';
import { parseWrk } from './wrk-output.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');
const DURATION = Number(process.env.DURATION ?? 10);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WARMUP = Number(process.env.WARMUP ?? 2);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 10);
const STREAMS = Number(process.env.STREAMS ?? 10);
const H1_CONNECTIONS = CONNECTIONS * STREAMS;
const APPEND = process.env.APPEND !== '0';
const WANTED = (process.env.TOOLS ?? 'h2load,node,wrk').split(',');
const TOOLS = WANTED.filter((t) => t === 'node' || t === 'autocannon' || has(t));
// HTTP/1.1 reference as run.mjs does it: wrk, or autocannon when wrk is missing (plain only).
if (WANTED.includes('wrk') && !TOOLS.includes('wrk') && !TOOLS.includes('autocannon')) TOOLS.push('autocannon');
const UPSTREAM_PORT = 18090;
const PORTS = { plain: 18140, https: 18141 };
const LOAD_TIMEOUT_MS = (Math.max(DURATION, WARMUP) + 30) * 1000;

/** Run a load generator pinned to core 1, bounded in time; resolves with its stdout. */
function runLoad(cmd, args, env = {}) {
  const [c, a] = pinned(1, cmd, args);
  return new Promise((resolve, reject) => {
    execFile(
      c,
      a,
      {
        encoding: 'utf8',
        timeout: LOAD_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        maxBuffer: 64 << 20,
        env: { ...process.env, ...env },
      },
      (err, stdout, stderr) => {
        if (err)
          reject(
            new Error(
              `${cmd} failed (${err.killed ? 'killed after the time limit' : err.code}): ${(stderr || stdout).slice(-800)}`,
            ),
          );
        else resolve(stdout);
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Load tools. Each returns { rps, p50, p99 (ms), total (responses in the window), served (all
// responses the proxy answered, for CPU/request), errors }.

const PROTO = { h2c: 'h2c', h2: 'h2', h1: 'http/1.1' };

/** h2load: h2c / h2 by ALPN, or --h1; latency percentiles from its per-request log. */
async function h2loadTool(url, proto, dir, duration) {
  const log = join(dir, 'h2load.log');
  rmSync(log, { force: true });
  const h1 = proto === 'h1';
  const args = [
    '-t',
    '1',
    '-c',
    String(h1 ? H1_CONNECTIONS : CONNECTIONS),
    '-m',
    String(h1 ? 1 : STREAMS),
    '-D',
    String(duration),
    `--log-file=${log}`,
    ...(h1 ? ['--h1'] : []),
    url,
  ];
  const out = await runLoad('h2load', args);
  const negotiated = /Application protocol: (\S+)/.exec(out)?.[1];
  if (negotiated !== PROTO[proto])
    throw new Error(`h2load negotiated ${negotiated}, expected ${PROTO[proto]}:\n${out.slice(-800)}`);
  const req =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/
      .exec(out)
      .slice(1)
      .map(Number);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out).slice(1).map(Number);
  const h = createHistogram();
  for (const line of readFileSync(log, 'latin1').split('\n')) {
    const t1 = line.indexOf('\t');
    if (t1 < 0) continue;
    const t2 = line.indexOf('\t', t1 + 1);
    const status = Number(line.slice(t1 + 1, t2));
    if (status >= 200 && status < 300) record(h, Number(line.slice(t2 + 1)));
  }
  return {
    rps: parseFloat(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)[1]),
    p50: percentile(h, 0.5) / 1000,
    p99: percentile(h, 0.99) / 1000,
    total: req[2],
    served: codes.reduce((s, n) => s + n, 0),
    errors: req[5] + codes[1] + codes[2] + codes[3],
  };
}

/** ./h2load.mjs in its own process: h2c or h2 (ALPN h2 only, so a fallback to HTTP/1.1 fails). */
async function nodeTool(url, duration) {
  const args = [
    join(HERE, 'h2load.mjs'),
    '-c',
    String(CONNECTIONS),
    '-m',
    String(STREAMS),
    '-d',
    String(duration),
    url,
  ];
  const r = JSON.parse(await runLoad(process.execPath, args));
  return { rps: r.rps, p50: r.p50, p99: r.p99, total: r.total, served: r.total + r.inflightAtEnd, errors: r.errors };
}

function wrkTool(url, duration) {
  return runLoad('wrk', ['-t1', `-c${H1_CONNECTIONS}`, `-d${duration}s`, '--latency', url]).then((out) => {
    const r = parseWrk(out);
    return { ...r, served: r.total };
  });
}

async function autocannonTool(url, duration) {
  const args = [
    join(HERE, 'node_modules/autocannon/autocannon.js'),
    '-c',
    String(H1_CONNECTIONS),
    '-d',
    String(duration),
    '-j',
    url,
  ];
  const r = JSON.parse(await runLoad(process.execPath, args));
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    total: r.requests.total,
    served: r.requests.total,
    errors: r.errors + r.non2xx,
  };
}

/** Every (tool, protocol, target) measured, in the order they run within a round. */
function loads(targets) {
  const all = [];
  const add = (tool, proto, target, fn) => {
    if (TOOLS.includes(tool) && targets[target]) all.push({ tool, proto, target, fn });
  };
  const url = (t) => targets[t].url;
  add('h2load', 'h2c', 'plain', (dir, d) => h2loadTool(url('plain'), 'h2c', dir, d));
  add('h2load', 'h2', 'https', (dir, d) => h2loadTool(url('https'), 'h2', dir, d));
  add('h2load', 'http/1.1', 'plain', (dir, d) => h2loadTool(url('plain'), 'h1', dir, d));
  add('h2load', 'http/1.1', 'https', (dir, d) => h2loadTool(url('https'), 'h1', dir, d));
  add('node', 'h2c', 'plain', (dir, d) => nodeTool(url('plain'), d));
  add('node', 'h2', 'https', (dir, d) => nodeTool(url('https'), d));
  add('wrk', 'http/1.1', 'plain', (dir, d) => wrkTool(url('plain'), d));
  add('wrk', 'http/1.1', 'https', (dir, d) => wrkTool(url('https'), d));
  add('autocannon', 'http/1.1', 'plain', (dir, d) => autocannonTool(url('plain'), d)); // its TLS client is the bottleneck
  return all;
}

// ---------------------------------------------------------------------------------------------
// Servers: the upstream and two Meridian processes (plain: HTTP/1.1 + h2c on one port; https: TLS
// with ALPN h2, http/1.1).

async function startMeridian(scenario, dir, material) {
  const port = PORTS[scenario];
  const file = join(dir, `${scenario}.json`);
  writeFileSync(file, JSON.stringify(await meridianConfig(scenario, port, material)));
  const args = [join(ROOT, 'dist/main.js'), 'start', '-c', file, '--state-dir', join(dir, `state-${scenario}`)];
  const proc = await start(`meridian-${scenario}`, process.execPath, args, { env: { MERIDIAN_LOG_LEVEL: 'info' } });
  return {
    name: `meridian-${scenario}`,
    url: `${scenario === 'https' ? 'https' : 'http'}://127.0.0.1:${port}/x`,
    proc,
  };
}

// ---------------------------------------------------------------------------------------------
// Measure, interleaved round by round; medians; report.

/** Untimed warm-up (JIT, pools): each (protocol, listener) once, with the first tool that has it. */
async function warmUp(list, dir) {
  if (!(WARMUP > 0)) return;
  const seen = new Set();
  for (const l of list) {
    const key = `${l.proto}|${l.target}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const r = await l.fn(dir, WARMUP);
    console.error(`warm-up ${l.tool} ${l.proto} meridian-${l.target}: ${r.rps.toFixed(0)} req/s, ${r.errors} errors`);
  }
}

async function measure(list, targets, dir) {
  const results = new Map();
  for (let round = 0; round < ROUNDS; round++) {
    for (const l of list) {
      const { proc } = targets[l.target];
      const before = cpuMicros(proc.pid);
      const r = await l.fn(dir, DURATION);
      r.cpuPerReq = r.served ? (cpuMicros(proc.pid) - before) / r.served : 0;
      const key = `${l.tool}|${l.proto}|${l.target}`;
      if (!results.has(key)) results.set(key, { ...l, runs: [] });
      results.get(key).runs.push(r);
      console.error(
        `round ${round + 1} ${l.tool} ${l.proto} meridian-${l.target}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.cpuPerReq.toFixed(1)} us/req cpu, ${r.errors} errors`,
      );
    }
  }
  return [...results.values()];
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ratio = (a, b) => (a && b ? (a / b).toFixed(2) : '-');
const fmt = (ms) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(1));

function summarize(results) {
  return results.map(({ tool, proto, target, runs }) => ({
    tool,
    proto,
    target,
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    cpu: median(runs.map((r) => r.cpuPerReq)),
    errors: runs.reduce((s, r) => s + r.errors, 0),
  }));
}

/**
 * Against HTTP/1.1 on the same listener (plain or TLS): the same tool's row when it has one, else the
 * wrk (autocannon) row, marked with *.
 */
function rows(summary) {
  const h1 = (tool, target) => summary.find((m) => m.tool === tool && m.target === target && m.proto === 'http/1.1');
  return summary.map((m) => {
    let base = h1(m.tool, m.target);
    let mark = '';
    if (!base) {
      base = h1('wrk', m.target) ?? h1('autocannon', m.target);
      mark = base ? '*' : '';
    }
    const load = m.proto === 'http/1.1' ? `${H1_CONNECTIONS} conns` : `${CONNECTIONS} x ${STREAMS}`;
    const proto =
      m.target === 'https'
        ? m.proto === 'h2'
          ? 'h2 (TLS, ALPN)'
          : `${m.proto} (TLS)`
        : m.proto === 'h2c'
          ? 'h2c (prior knowledge)'
          : m.proto;
    const vs = (a, b) => (base ? `${ratio(a, b)}${mark}` : '-');
    return `| ${m.tool} | ${proto} | meridian-${m.target} | ${load} | ${m.rps.toFixed(0)} | ${fmt(m.p50)} | ${fmt(m.p99)} | ${m.cpu ? m.cpu.toFixed(1) : '-'} | ${vs(m.rps, base?.rps)} | ${vs(m.cpu, base?.cpu)} | ${m.errors} |`;
  });
}

function report(summary) {
  const cpu = cpus()[0]?.model ?? 'unknown';
  const setup = `HTTP/2 downstream (h2.mjs): DURATION=${DURATION}s ROUNDS=${ROUNDS} (medians) WARMUP=${WARMUP}s, HTTP/2 ${CONNECTIONS} sessions x ${STREAMS} streams in flight, HTTP/1.1 ${H1_CONNECTIONS} connections (same requests in flight), one Meridian worker, 100-byte responses, HTTP/1.1 upstream; proxy pinned to core 0 and load + upstream to core 1: ${PIN}. h2load is the precise tool; node (h2load.mjs) and autocannon are bounded by the load generator. "vs HTTP/1.1": same listener, same tool (* = against the wrk/autocannon row).`;
  return [
    `\n## ${new Date().toISOString()} · ${cpus().length} cores · ${cpu} · node ${process.version}`,
    '',
    setup,
    '',
    '| tool | protocol | target | load | req/s | p50 ms | p99 ms | proxy CPU us/req | req/s vs HTTP/1.1 | CPU vs HTTP/1.1 | errors |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows(summary),
    '',
  ].join('\n');
}

async function main() {
  if (!existsSync(join(ROOT, 'dist/main.js')))
    throw new Error('build Meridian first: npm run build (in the repo root)');
  if (TOOLS.length === 0) throw new Error(`none of TOOLS=${WANTED.join(',')} is available`);
  const dir = mkdtempSync(join(tmpdir(), 'meridian-h2-bench-'));
  await start('upstream', process.execPath, [join(HERE, 'servers/upstream.mjs')], {
    env: { PORTS: String(UPSTREAM_PORT) },
    core: 1,
  });
  const targets = {
    plain: await startMeridian('plain', dir),
    https: await startMeridian('https', dir, { cert: selfSignedCert(dir) }),
  };
  const list = loads(targets);
  // Bound the whole run: every load is bounded on its own, this catches anything else hanging.
  const budget = (ROUNDS * list.length * (DURATION + 30) + 4 * (WARMUP + 30) + 120) * 1000;
  setTimeout(() => {
    console.error(`h2.mjs: gave up after ${budget / 1000} s`);
    cleanup();
    process.exit(1);
  }, budget).unref();
  console.error(`tools: ${TOOLS.join(', ')}; ${list.length} loads x ${ROUNDS} rounds x ${DURATION} s`);
  await warmUp(list, dir);
  const text = report(summarize(await measure(list, targets, dir)));
  console.log(text);
  if (APPEND) appendFileSync(join(HERE, 'RESULTS.md'), text);
  cleanup();
  rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
