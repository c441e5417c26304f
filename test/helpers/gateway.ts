import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { startGateway, type RunningGateway } from '../../src/process/gateway.js';

export const REPO = resolve(import.meta.dirname, '../..');
export const MAIN = join(REPO, 'dist/main.js');

/** A minimal valid config with one listener on a free port, merged with `extra`. */
export function baseConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    gateway: { name: 'test', workers: 1, accessLog: { enabled: false } },
    admin: { address: '127.0.0.1:0' },
    listeners: [{ name: 'main', address: '127.0.0.1:0', protocol: 'http' }],
    ...extra,
  };
}

export function tempDir(prefix = 'meridian-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Write a config object as YAML into a temp dir; returns the file path. */
export function writeConfig(config: unknown, dir = tempDir()): string {
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

export interface InProcessGateway {
  gw: RunningGateway;
  url: string;
  admin: string;
  configFile: string;
  stateDir: string;
  stop(): Promise<void>;
}

/** Start a single-process gateway inside the test process (fast; for data-plane behaviour). */
export async function startInProcess(config: Record<string, unknown>): Promise<InProcessGateway> {
  const dir = tempDir();
  const configFile = writeConfig(config, dir);
  const stateDir = join(dir, 'state');
  const gw = await startGateway({ configFile, stateDir, workers: 1 });
  return {
    gw,
    configFile,
    stateDir,
    url: `http://${gw.addresses.listeners.main}`,
    admin: `http://${gw.addresses.admin}`,
    stop: () => gw.stop(),
  };
}

export interface SpawnedGateway {
  proc: ChildProcess;
  ready: { admin: string; ops?: string; listeners: Record<string, string>; version: number };
  url: string;
  admin: string;
  configFile: string;
  stateDir: string;
  output: string[];
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
  exited: Promise<number | null>;
}

/** A `node dist/main.js` child process: its output lines and its exit code (-1 when a signal ended it). */
export interface MainProcess<R> {
  proc: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
  /** The parsed "ready" log line. */
  ready: R;
}

/** Spawn `node dist/main.js <args>` (a gateway or a hub); resolves on its "ready" log line. */
export async function spawnMain<R>(
  args: string[],
  what: string,
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<MainProcess<R>> {
  const proc = spawn(process.execPath, [MAIN, ...args], {
    cwd: REPO,
    env: { ...process.env, MERIDIAN_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((r) =>
    proc.once('exit', (code, signal) => r(code ?? (signal ? -1 : null))),
  );
  const ready = await new Promise<R>((resolveReady, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        output.push(line);
        if (line.includes('"msg":"ready"')) resolveReady(JSON.parse(line));
      }
    });
    proc.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
    void exited.then((code) => reject(new Error(`${what} exited (${code}) before ready:\n${output.join('\n')}`)));
    setTimeout(
      () => reject(new Error(`${what} not ready in ${timeoutMs / 1000}s:\n${output.join('\n')}`)),
      timeoutMs,
    ).unref();
  });
  return { proc, output, exited, ready };
}

/** Spawn `node dist/main.js start` as a real multi-process gateway; resolves on its "ready" log line. */
export async function spawnGateway(
  config: Record<string, unknown> | string,
  opts: { stateDir?: string; env?: Record<string, string> } = {},
): Promise<SpawnedGateway> {
  const dir = tempDir();
  const configFile = typeof config === 'string' ? config : writeConfig(config, dir);
  const stateDir = opts.stateDir ?? join(dir, 'state');
  const { proc, output, exited, ready } = await spawnMain<SpawnedGateway['ready']>(
    ['start', '-c', configFile, '--state-dir', stateDir],
    'gateway',
    opts.env,
  );
  return {
    proc,
    ready,
    configFile,
    stateDir,
    output,
    exited,
    url: `http://${ready.listeners.main}`,
    admin: `http://${ready.admin}`,
    kill: (signal = 'SIGKILL') => {
      proc.kill(signal);
    },
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** Poll until `fn` returns truthy (or throw after `timeoutMs`). */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 5000, stepMs = 25): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
