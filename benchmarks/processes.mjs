// Shared by the benchmark drivers: pinned child processes that are always cleaned up, and CPU time.
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { connect } from 'node:net';

export const has = (bin) => {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
export const PIN = has('taskset') && cpus().length >= 2;
/** [command, args] running `cmd` pinned to `core` where taskset exists. */
export const pinned = (core, cmd, args) => (PIN ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args]);
const READY = /on \d+|"msg":"ready"|listening/;
const children = [];

/**
 * Spawn a server (pinned to `core`) and resolve once its output matches `ready`, or, for servers
 * that print nothing (nginx), once `readyPort` accepts connections.
 */
export function start(name, cmd, args, { env = {}, core = 0, ready = READY, readyPort } = {}) {
  const [c, a] = pinned(core, cmd, args);
  const p = spawn(c, a, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(p);
  p.name = name;
  return new Promise((resolve, reject) => {
    let out = '';
    if (readyPort) pollPort(readyPort, () => resolve(p));
    const onData = (d) => {
      // Keep the tail only: a gateway writing access logs under load would grow it without end.
      out = (out + d).slice(-4096);
      if (ready.test(out)) resolve(p);
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', (d) => {
      out += d;
    });
    p.on('exit', (code) => reject(new Error(`${name} exited ${code}: ${out.slice(-500)}`)));
    setTimeout(() => reject(new Error(`${name} did not start: ${out.slice(-500)}`)), 20000).unref();
  });
}

export function cleanup() {
  for (const c of children)
    if (c.exitCode === null) {
      try {
        c.kill('SIGKILL');
      } catch {}
    }
}
process.on('exit', cleanup);
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});
process.on('SIGTERM', () => {
  cleanup();
  process.exit(143);
});

/** utime + stime of a process in microseconds (from /proc; 0 where /proc is missing). */
export function cpuMicros(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) * 10_000;
  } catch {
    return 0;
  }
}

function pollPort(port, onOpen, deadline = Date.now() + 20000) {
  const s = connect(port, '127.0.0.1');
  s.once('connect', () => {
    s.destroy();
    onOpen();
  });
  s.once('error', () => {
    if (Date.now() < deadline) setTimeout(() => pollPort(port, onOpen, deadline), 50);
  });
}
