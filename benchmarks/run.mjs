// Meridian beside its baselines, in the same run, interleaved (A B C D A B C D ...).
// Env: DURATION (s, 10), ROUNDS (3), CONNECTIONS (100), SCENARIOS (plain,jwt,https,ratelimit-local), TOOLS (autocannon,wrk)
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, appendFileSync, existsSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jwtToken, meridianConfig, selfSignedCert } from './scenarios.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');
const DURATION = Number(process.env.DURATION ?? 10);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 100);
const SCENARIOS = (process.env.SCENARIOS ?? 'plain,jwt,https,ratelimit-local').split(',');
const has = (bin) => { try { execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }); return true; } catch { return false; } };
const TOOLS = (process.env.TOOLS ?? 'autocannon,wrk').split(',').filter((t) => t === 'autocannon' || has(t));
const PIN = has('taskset') && cpus().length >= 2;
const pinned = (core, cmd, args) => (PIN ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args]);
const children = [];

function start(name, cmd, args, env = {}, core = 0) {
  const [c, a] = pinned(core, cmd, args);
  const p = spawn(c, a, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(p);
  p.name = name;
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d) => { out += d; if (/on \d+|"msg":"ready"|listening/.test(out)) resolve(p); };
    p.stdout.on('data', onData);
    p.stderr.on('data', (d) => { out += d; });
    p.on('exit', (code) => reject(new Error(`${name} exited ${code}: ${out.slice(-500)}`)));
    setTimeout(() => reject(new Error(`${name} did not start: ${out.slice(-500)}`)), 20000).unref();
  });
}

function cleanup() {
  for (const c of children) if (c.exitCode === null) { try { c.kill('SIGKILL'); } catch {} }
}
process.on('exit', cleanup);
process.on('SIGINT', () => { cleanup(); process.exit(130); });

/** utime + stime of a process in microseconds (from /proc; 0 where /proc is missing). */
function cpuMicros(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) * 10_000;
  } catch { return 0; }
}

function load(tool, url, headers) {
  const h = Object.entries(headers ?? {});
  if (tool === 'wrk') {
    const args = ['-t1', `-c${CONNECTIONS}`, `-d${DURATION}s`, '--latency', ...h.flatMap(([k, v]) => ['-H', `${k}: ${v}`]), url];
    const [c, a] = pinned(1, 'wrk', args);
    const out = execFileSync(c, a, { encoding: 'utf8' });
    const ms = (s) => (s.endsWith('us') ? parseFloat(s) / 1000 : s.endsWith('ms') ? parseFloat(s) : parseFloat(s) * 1000);
    const total = Number(/(\d+) requests in/.exec(out)[1]);
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    return { rps: parseFloat(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]), p50: ms(/50%\s+(\S+)/.exec(out)[1]), p99: ms(/99%\s+(\S+)/.exec(out)[1]), total, errors: non2xx };
  }
  const args = [join(HERE, 'node_modules/autocannon/autocannon.js'), '-c', String(CONNECTIONS), '-d', String(DURATION), '-j', ...h.flatMap(([k, v]) => ['-H', `${k}=${v}`]), url];
  const [c, a] = pinned(1, process.execPath, args);
  const r = JSON.parse(execFileSync(c, a, { encoding: 'utf8', env: { ...process.env, NODE_TLS_REJECT_UNAUTHORIZED: '0' } }));
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, total: r.requests.total, errors: r.errors + r.non2xx };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-bench-'));
  if (!existsSync(join(ROOT, 'dist/main.js'))) throw new Error('build Meridian first: npm run build (in the repo root)');
  await start('upstream', process.execPath, [join(HERE, 'servers/upstream.mjs')], { PORT: '18090' }, 1);
  const targets = [
    { name: 'direct', url: 'http://127.0.0.1:18090/x', proc: null },
    { name: 'floor', url: 'http://127.0.0.1:18081/x', proc: await start('floor', process.execPath, [join(HERE, 'servers/floor-proxy.mjs')], { PORT: '18081' }) },
    { name: 'fastify', url: 'http://127.0.0.1:18082/x', proc: await start('fastify', process.execPath, [join(HERE, 'servers/fastify-proxy.mjs')], { PORT: '18082' }) },
  ];
  const cert = SCENARIOS.includes('https') ? selfSignedCert(dir) : undefined;
  let port = 18100;
  for (const s of SCENARIOS) {
    const p = port++;
    const file = join(dir, `${s}.json`);
    writeFileSync(file, JSON.stringify(await meridianConfig(s, p, cert)));
    const proc = await start(`meridian-${s}`, process.execPath, [join(ROOT, 'dist/main.js'), 'start', '-c', file, '--state-dir', join(dir, `state-${s}`)], { MERIDIAN_LOG_LEVEL: 'info' }).catch((e) => { console.error(`skipping ${s}: ${e.message}`); return null; });
    if (proc) targets.push({ name: `meridian-${s}`, url: `${s === 'https' ? 'https' : 'http'}://127.0.0.1:${p}/x`, proc, headers: s === 'jwt' ? { authorization: `Bearer ${await jwtToken()}` } : undefined, tools: s === 'https' ? ['wrk'] : undefined });
  }
  const results = {};
  for (const tool of TOOLS) {
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        if (t.tools && !t.tools.includes(tool)) continue;
        const before = t.proc ? cpuMicros(t.proc.pid) : 0;
        const r = load(tool, t.url, t.headers);
        r.cpuPerReq = t.proc ? (cpuMicros(t.proc.pid) - before) / r.total : 0;
        (results[`${tool}|${t.name}`] ??= []).push(r);
        console.error(`${tool} round ${round + 1} ${t.name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99} ms, ${r.cpuPerReq.toFixed(1)} us/req cpu, ${r.errors} errors`);
      }
    }
  }
  report(results);
  cleanup();
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function report(results) {
  const rows = [];
  const byTool = {};
  for (const [k, runs] of Object.entries(results)) {
    const [tool, name] = k.split('|');
    const m = { rps: median(runs.map((r) => r.rps)), p50: median(runs.map((r) => r.p50)), p99: median(runs.map((r) => r.p99)), cpu: median(runs.map((r) => r.cpuPerReq)), errors: runs.reduce((s, r) => s + r.errors, 0) };
    (byTool[tool] ??= {})[name] = m;
  }
  for (const [tool, t] of Object.entries(byTool)) {
    for (const [name, m] of Object.entries(t)) {
      const vsFastify = t.fastify ? (m.rps / t.fastify.rps).toFixed(2) : '-';
      const cpuVsFloor = t.floor?.cpu && m.cpu ? (m.cpu / t.floor.cpu).toFixed(2) : '-';
      rows.push(`| ${tool} | ${name} | ${m.rps.toFixed(0)} | ${m.p50} | ${m.p99} | ${m.cpu ? m.cpu.toFixed(1) : '-'} | ${vsFastify} | ${cpuVsFloor} | ${m.errors} |`);
    }
  }
  const cpu = cpus()[0]?.model ?? 'unknown';
  const header = `\n## ${new Date().toISOString()} · ${cpus().length} cores · ${cpu} · node ${process.version}\n\nDURATION=${DURATION}s ROUNDS=${ROUNDS} (medians) CONNECTIONS=${CONNECTIONS}, one Meridian worker, 100-byte responses, proxies pinned to core 0 and load + upstream to core 1: ${PIN}.\n\n| tool | target | req/s | p50 ms | p99 ms | proxy CPU us/req | req/s vs fastify | CPU vs floor | errors |\n|---|---|---|---|---|---|---|---|---|\n`;
  const text = header + rows.join('\n') + '\n';
  console.log(text);
  appendFileSync(join(HERE, 'RESULTS.md'), text);
}

main().catch((e) => { console.error(e); cleanup(); process.exit(1); });
