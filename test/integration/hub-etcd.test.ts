import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import { Etcd3 } from 'etcd3';
import { startHub, type RunningHub } from '../../src/hub/control-plane.js';
import { HubClient } from '../../src/control/managed/hub-client.js';
import type { Snapshot } from '../../src/hub/protocol.js';
import { systemRng } from '../../src/common/clock.js';
import { tempDir, waitFor } from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';
import { startEtcd, type TestEtcd } from '../helpers/etcd-server.js';

/**
 * Two hub replicas sharing one document through a real etcd (hub.store.etcd): a change made on either
 * reaches the other; concurrent changes on both never both commit on one base and no acknowledged change
 * is lost; etcd away refuses writes (503) while reads go on, and everything resumes when etcd returns.
 */
let etcd: TestEtcd;
const hubs: RunningHub[] = [];
const urls: string[] = [];
const PREFIX = '/meridian/test-hub';

async function startReplica(i: number, etcdUrl: string): Promise<void> {
  const dir = tempDir(`meridian-hub-etcd-${i}-`);
  const port = await closedPort();
  writeFileSync(
    join(dir, 'hub.yaml'),
    stringify({
      hub: { address: `127.0.0.1:${port}`, store: { etcd: { endpoints: [etcdUrl], prefix: PREFIX, timeout: '1s' } } },
      routes: [{ name: 'seed', match: { path: { exact: '/seed' } }, directResponse: { status: 200 } }],
    }),
  );
  hubs[i] = await startHub({ configFile: join(dir, 'hub.yaml'), stateDir: join(dir, 'state') });
  urls[i] = `http://127.0.0.1:${port}`;
}

const api = async (i: number, path: string, init: { method?: string; body?: unknown } = {}) => {
  const r = await request(`${urls[i]}${path}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { 'content-type': 'application/json' },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: r.statusCode, body: (await r.body.json()) as any };
};

const routeNames = async (i: number): Promise<string[]> =>
  (await api(i, '/config')).body.routes.map((r: { name: string }) => r.name);
const route = (path: string) => ({ match: { path: { exact: path } }, directResponse: { status: 204 } });

beforeAll(async () => {
  etcd = await startEtcd();
  await startReplica(0, etcd.url);
  await startReplica(1, etcd.url);
}, 60_000);

const stopped = new Set<RunningHub>();
afterAll(async () => {
  for (const h of hubs) if (h && !stopped.has(h)) await h.stop();
  await etcd?.stop();
});

describe('hub replicas on etcd (hub.store.etcd)', () => {
  it('the first replica seeds etcd with its document; a change on either replica reaches the other', async () => {
    const client = new Etcd3({ hosts: etcd.url });
    try {
      const stored = JSON.parse((await client.get(`${PREFIX}/document`).string())!);
      expect(stored.config.routes.map((r: { name: string }) => r.name)).toEqual(['seed']);
    } finally {
      client.close();
    }
    expect((await api(0, '/routes/from-a', { method: 'PUT', body: route('/a') })).status).toBe(200);
    await waitFor(async () => (await routeNames(1)).includes('from-a'), 5000);
    expect((await api(1, '/routes/from-b', { method: 'PUT', body: route('/b') })).status).toBe(200);
    await waitFor(async () => (await routeNames(0)).includes('from-b'), 5000);
    // One number per version at every replica: ETag and If-Match mean the same on either.
    await waitFor(async () => (await api(0, '/fleet')).body.version === (await api(1, '/fleet')).body.version, 5000);
    // Each replica keeps its own address: only the shared part of the document travels.
    expect((await api(0, '/config')).body.hub.address).not.toBe((await api(1, '/config')).body.hub.address);
  });

  it('concurrent changes on both replicas: each is committed once or refused with 409; no acknowledged change is lost', async () => {
    const acknowledged: string[] = [];
    const refused: number[] = [];
    // Every write etcd accepted: one per acknowledged change, or two replicas committed on one base.
    const client = new Etcd3({ hosts: etcd.url });
    const watcher = await client.watch().key(`${PREFIX}/document`).create();
    let puts = 0;
    watcher.on('put', () => puts++);
    for (let round = 0; round < 10; round++) {
      const results = await Promise.all(
        [0, 1].map(async (i) => {
          const name = `race-${round}-${i}`;
          const r = await api(i, `/routes/${name}`, { method: 'PUT', body: route(`/${name}`) });
          return { name, status: r.status };
        }),
      );
      for (const r of results) r.status === 200 ? acknowledged.push(r.name) : refused.push(r.status);
    }
    // Refusals are conflicts (the other replica committed on the same base first), never anything else.
    expect(refused.every((s) => s === 409)).toBe(true);
    await waitFor(() => puts === acknowledged.length, 5000).catch(() => undefined);
    expect(puts).toBe(acknowledged.length);
    await watcher.cancel();
    client.close();
    expect(acknowledged.length).toBeGreaterThanOrEqual(10);
    // Both replicas converge on one document holding every acknowledged change.
    await waitFor(async () => {
      const [a, b] = [await routeNames(0), await routeNames(1)];
      return JSON.stringify(a) === JSON.stringify(b) && acknowledged.every((n) => a.includes(n));
    }, 10_000);
    // One number per version at both replicas, and no number committed by both: each version after
    // the file's was written by one replica (its admin API) and adopted by the other (source etcd:<rev>).
    type Listed = Array<{ version: number; source: string }>;
    const [va, vb] = [
      (await api(0, '/config/versions')).body as Listed,
      (await api(1, '/config/versions')).body as Listed,
    ];
    const authored = (v: { source: string }) => v.source.startsWith('admin');
    const sourceAtB = new Map(vb.map((v) => [v.version, v]));
    const both = va.filter((v) => v.version > 1 && sourceAtB.has(v.version));
    expect(both.length).toBeGreaterThanOrEqual(acknowledged.length);
    expect(both.filter((v) => authored(v) === authored(sourceAtB.get(v.version)!))).toEqual([]);
    expect(va.at(-1)!.version).toBe(vb.at(-1)!.version);
  });

  it('etcd away: writes are refused with 503, reads still served; when etcd returns writes resume and reach the other replica', async () => {
    await etcd.kill();
    const refused = await api(0, '/routes/while-down', { method: 'PUT', body: route('/down') });
    expect(refused.status).toBe(503);
    expect(refused.body.error).toBe('store_unavailable');
    expect((await api(0, '/config')).status).toBe(200);
    expect(await routeNames(1)).not.toContain('while-down');
    await etcd.restart();
    const ok = await waitFor(async () => {
      const r = await api(0, '/routes/after-return', { method: 'PUT', body: route('/after') });
      return r.status === 200 ? r : undefined;
    }, 15_000);
    expect(ok.status).toBe(200);
    await waitFor(async () => (await routeNames(1)).includes('after-return'), 15_000);
    expect(await routeNames(0)).not.toContain('while-down');
  }, 60_000);

  it('a gateway listing both replicas (managementServer.failoverUrls) moves to the other when its replica stops; the next change reaches it and is acknowledged there', async () => {
    const received: Snapshot[] = [];
    const report = { labels: { cluster: 'gw-f' }, locality: { region: 'r', zone: 'z', subzone: '' }, instances: [] };
    const client = new HubClient(
      { url: urls[0]!, failoverUrls: [urls[1]!], id: 'gw-f', reportIntervalMs: 60_000 },
      { report: () => report, apply: async (snap) => void received.push(snap) },
      systemRng,
    );
    client.start();
    try {
      await waitFor(() => received.length > 0, 5000);
      await hubs[0]!.stop();
      stopped.add(hubs[0]!);
      const put = await api(1, '/routes/after-failover', { method: 'PUT', body: route('/failover') });
      expect(put.status).toBe(200);
      await waitFor(() => received.at(-1)?.resources.routes.some((r) => r.name === 'after-failover'), 10_000);
      // Replica 1 records the gateway's ack of that version.
      await waitFor(async () => {
        const fleet = (await api(1, '/fleet')).body as {
          gateways: Array<{ id: string; lastAck?: { version: number } }>;
        };
        return fleet.gateways.find((g) => g.id === 'gw-f')?.lastAck?.version === put.body.version;
      }, 10_000);
    } finally {
      client.stop();
    }
  }, 30_000);
});
