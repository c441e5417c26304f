import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endChild } from './child-process.js';
import { closedPort as freePort } from './upstream.js';

/** A real etcd (Debian's etcd-server; .ci/run installs it) on free loopback ports, one member, data in a temp dir. */
export interface TestEtcd {
  url: string;
  /** SIGKILL it (an outage); its data stays. */
  kill(): Promise<void>;
  /** Start it again on the same ports and data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Wait until etcd answers its /health with health true. */
async function waitHealthy(url: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(`${url}/health`)
      .then(async (r) => ((await r.json()) as { health?: string }).health === 'true')
      .catch(() => false);
    if (ok) return;
    if (Date.now() > end) throw new Error(`etcd at ${url} did not become healthy`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startEtcd(): Promise<TestEtcd> {
  const [client, peer] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'meridian-etcd-'));
  const url = `http://127.0.0.1:${client}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  let proc: ChildProcess | undefined;
  const launch = async () => {
    proc = spawn(
      'etcd',
      [
        '--name=test',
        `--data-dir=${join(dir, 'data')}`,
        `--listen-client-urls=${url}`,
        `--advertise-client-urls=${url}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=test=${peerUrl}`,
      ],
      { stdio: 'ignore' },
    );
    await waitHealthy(url);
  };
  const kill = () => endChild(proc, 'SIGKILL');
  await launch();
  return {
    url,
    kill,
    restart: launch,
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
