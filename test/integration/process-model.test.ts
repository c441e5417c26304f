import { describe, it, expect, afterEach } from 'vitest';
import { writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { stringify } from 'yaml';
import autocannon from 'autocannon';
import { request, Agent } from 'undici';
import { spawnGateway, baseConfig, waitFor, type SpawnedGateway } from '../helpers/gateway.js';
import { startUpstream, okHandler, type TestUpstream } from '../helpers/upstream.js';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

function config(upstream: string, body: string) {
  return baseConfig({
    gateway: { name: 'pm', workers: 2, accessLog: { enabled: false }, drainTimeout: '10s' },
    routes: [
      { name: 'version', match: { path: { exact: '/version' } }, directResponse: { status: 200, body } },
      { name: 'up', match: { path: { prefix: '/' } }, cluster: 'up' },
    ],
    clusters: [{ name: 'up', endpoints: [{ address: upstream }] }],
  });
}

async function start(up: TestUpstream, body: string): Promise<SpawnedGateway> {
  const gw = await spawnGateway(config(up.address, body));
  cleanup.push(() => gw.stop());
  return gw;
}

/** Distinct bodies seen over fresh connections (each request may land on either worker). */
async function versionsSeen(url: string, n: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const agent = new Agent();
    const r = await request(`${url}/version`, { dispatcher: agent });
    seen.add(await r.body.text());
    await agent.close();
  }
  return seen;
}

function workerPids(primary: number): number[] {
  const out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(primary)]).toString();
  return out
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter(Boolean);
}

describe('process model (2 workers)', () => {
  it('applies a SIGHUP reload to every worker under load with zero non-2xx', async () => {
    const up = await startUpstream(okHandler('up'));
    cleanup.push(() => up.close());
    const gw = await start(up, 'v1');
    expect(workerPids(gw.proc.pid!)).toHaveLength(2);
    const load = autocannon({ url: `${gw.url}/load`, connections: 10, duration: 3 });
    // The load is flowing before the reload.
    await waitFor(() => up.requests.filter((q) => q.url === '/load').length >= 10, 5000, 10);
    writeFileSync(gw.configFile, stringify(config(up.address, 'v2')));
    gw.proc.kill('SIGHUP');
    await waitFor(async () => (await versionsSeen(gw.url, 4)).has('v2'), 5000);
    const result = await load;
    expect(result.non2xx).toBe(0);
    expect(result.errors).toBe(0);
    expect(result.requests.total).toBeGreaterThan(100);
    expect([...(await versionsSeen(gw.url, 40))]).toEqual(['v2']);
  });

  it('rejects an invalid reload and keeps serving the old config', async () => {
    const up = await startUpstream(okHandler('up'));
    cleanup.push(() => up.close());
    const gw = await start(up, 'v1');
    writeFileSync(gw.configFile, 'routes: [ { name: bad, match: {}, cluster: missing } ]\n');
    gw.proc.kill('SIGHUP');
    await waitFor(() => gw.output.some((l) => l.includes('config reload rejected')), 5000);
    expect(gw.output.find((l) => l.includes('config reload rejected'))).toContain('routes[0].cluster');
    expect([...(await versionsSeen(gw.url, 10))]).toEqual(['v1']);
  });

  it('drains on SIGTERM: in-flight requests finish, then the process exits', async () => {
    const slow = await startUpstream((_req, res) => setTimeout(() => res.end('slow done'), 700));
    cleanup.push(() => slow.close());
    const gw = await start(slow, 'v1');
    const inflight = Array.from({ length: 8 }, () =>
      request(`${gw.url}/slow`, { dispatcher: new Agent() }).then(async (r) => [r.statusCode, await r.body.text()]),
    );
    await waitFor(() => slow.requests.length >= 8, 5000);
    gw.proc.kill('SIGTERM');
    const results = await Promise.all(inflight);
    expect(results).toEqual(Array(8).fill([200, 'slow done']));
    expect(await gw.exited).toBe(0);
  });

  it('restarts a worker that dies', async () => {
    const up = await startUpstream(okHandler('up'));
    cleanup.push(() => up.close());
    const gw = await start(up, 'v1');
    const [victim] = workerPids(gw.proc.pid!);
    process.kill(victim, 'SIGKILL');
    await waitFor(() => {
      const p = workerPids(gw.proc.pid!);
      return p.length === 2 && !p.includes(victim);
    }, 10000);
    expect([...(await versionsSeen(gw.url, 10))]).toEqual(['v1']);
  });
});
