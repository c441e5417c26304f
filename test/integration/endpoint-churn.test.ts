import { describe, it, expect, afterEach } from 'vitest';
import { request } from 'undici';
import { startInProcess, spawnGateway, baseConfig, waitFor } from '../helpers/gateway.js';
import { createServer } from 'node:net';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * Endpoint sets that change under traffic (issue 17): a removed endpoint drains (a request already
 * on it finishes on the snapshot it started with), and an endpoint that stays keeps its warm
 * connection across the change.
 */
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

async function upstream(name: string, delayMs = 0): Promise<TestUpstream & { connections: number }> {
  const up = (await startUpstream((_req, res) => setTimeout(() => res.end(name), delayMs))) as TestUpstream & {
    connections: number;
  };
  up.connections = 0;
  up.server.on('connection', () => up.connections++);
  cleanup.push(() => up.close());
  return up;
}

describe('endpoint churn', () => {
  it('a request in flight on an endpoint the config removes finishes; the next goes to the endpoint that stays, on its warm connection', async () => {
    const slow = await upstream('slow', 800);
    const stays = await upstream('stays');
    const gw = await startInProcess(
      baseConfig({
        routes: [
          { name: 'slow', match: { path: { prefix: '/slow' } }, cluster: 'slow' },
          { name: 'app', match: { path: { prefix: '/' } }, cluster: 'app' },
        ],
        clusters: [
          { name: 'slow', endpoints: [{ address: slow.address }, { address: stays.address, priority: 1 }] },
          { name: 'app', endpoints: [{ address: stays.address }] },
        ],
      }),
    );
    cleanup.push(() => gw.stop());
    // Warm the connection to the endpoint that stays.
    expect(await (await request(`${gw.url}/warm`)).body.text()).toBe('stays');
    const warmConnections = stays.connections;
    const inFlight = request(`${gw.url}/slow`);
    // The request is in flight once the slow upstream holds it.
    await waitFor(() => slow.requests.some((q) => q.url === '/slow'), 5000, 10);
    // Remove the slow endpoint while its request is in flight.
    const put = await request(`${gw.admin}/clusters/slow`, {
      method: 'PUT',
      body: JSON.stringify({ endpoints: [{ address: stays.address }] }),
    });
    expect(put.statusCode).toBe(200);
    await put.body.dump();
    const r = await inFlight;
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('slow');
    expect(await (await request(`${gw.url}/slow`)).body.text()).toBe('stays');
    // The endpoint that stayed in cluster `app` (unchanged) kept its pool and connection.
    expect(await (await request(`${gw.url}/again`)).body.text()).toBe('stays');
    expect(stays.connections).toBe(warmConnections);
  });

  it('an endpoint added through the admin API reaches both workers as a delta: the endpoint that stays keeps its host state (its request count)', async () => {
    const stays = await upstream('stays');
    const added = await upstream('added');
    const gw = await spawnGateway(
      baseConfig({
        gateway: { name: 'delta', workers: 2, accessLog: { enabled: false } },
        routes: [{ name: 'app', match: { path: { prefix: '/' } }, cluster: 'app' }],
        clusters: [{ name: 'app', endpoints: [{ address: stays.address }] }],
      }),
    );
    cleanup.push(() => gw.stop());
    for (let i = 0; i < 20; i++) expect(await (await request(`${gw.url}/x`)).body.text()).toBe('stays');
    const requestsOf = async (address: string) => {
      const status = (await (await request(`${gw.admin}/clusters/app/status`)).body.json()) as {
        workersReporting: number;
        endpoints: Array<{ address: string; requests: number }>;
      };
      expect(status.workersReporting).toBe(2);
      return status.endpoints.find((e) => e.address === address)?.requests;
    };
    expect(await requestsOf(stays.address)).toBe(20);
    const put = await request(`${gw.admin}/clusters/app/endpoints/${added.address}`, { method: 'PUT', body: '{}' });
    expect(put.statusCode).toBe(200);
    await put.body.dump();
    // A whole-snapshot rebuild would have made new host objects with zero counts.
    expect(await requestsOf(stays.address)).toBe(20);
    expect(await requestsOf(added.address)).toBe(0);
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(await (await request(`${gw.url}/x`)).body.text());
    expect(seen).toEqual(new Set(['stays', 'added']));
    // Removing it is a delta too; the survivor's count goes on.
    const del = await request(`${gw.admin}/clusters/app/endpoints/${added.address}`, { method: 'DELETE' });
    expect(del.statusCode).toBe(200);
    await del.body.dump();
    expect(await requestsOf(added.address)).toBeUndefined();
    expect(await requestsOf(stays.address)).toBeGreaterThan(20);
    for (let i = 0; i < 10; i++) expect(await (await request(`${gw.url}/x`)).body.text()).toBe('stays');
  });

  it('after a version a worker failed to apply (and the restore), the next endpoint change still reaches it (a whole snapshot on resync)', async () => {
    const stays = await upstream('stays');
    const added = await upstream('added');
    const busy = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => busy.once('listening', r));
    cleanup.push(() => new Promise((r) => busy.close(r)));
    const gw = await startInProcess(
      baseConfig({
        routes: [{ name: 'app', match: { path: { prefix: '/' } }, cluster: 'app' }],
        clusters: [{ name: 'app', endpoints: [{ address: stays.address }] }],
      }),
    );
    cleanup.push(() => gw.stop());
    const { port } = busy.address() as { port: number };
    const bad = await request(`${gw.admin}/listeners/second`, {
      method: 'PUT',
      body: JSON.stringify({ address: `127.0.0.1:${port}`, protocol: 'http' }),
    });
    expect(bad.statusCode).toBe(500);
    await bad.body.dump();
    const put = await request(`${gw.admin}/clusters/app`, {
      method: 'PUT',
      body: JSON.stringify({ endpoints: [{ address: added.address }] }),
    });
    expect(put.statusCode).toBe(200);
    await put.body.dump();
    expect(await (await request(`${gw.url}/x`)).body.text()).toBe('added');
  });
});
