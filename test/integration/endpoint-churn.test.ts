import { describe, it, expect, afterEach } from 'vitest';
import { request } from 'undici';
import { startInProcess, baseConfig } from '../helpers/gateway.js';
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
  const up = await startUpstream((_req, res) => setTimeout(() => res.end(name), delayMs)) as TestUpstream & { connections: number };
  up.connections = 0;
  up.server.on('connection', () => up.connections++);
  cleanup.push(() => up.close());
  return up;
}

describe('endpoint churn', () => {
  it('a request in flight on an endpoint the config removes finishes; the next goes to the endpoint that stays, on its warm connection', async () => {
    const slow = await upstream('slow', 800);
    const stays = await upstream('stays');
    const gw = await startInProcess(baseConfig({
      routes: [
        { name: 'slow', match: { path: { prefix: '/slow' } }, cluster: 'slow' },
        { name: 'app', match: { path: { prefix: '/' } }, cluster: 'app' },
      ],
      clusters: [
        { name: 'slow', endpoints: [{ address: slow.address }, { address: stays.address, priority: 1 }] },
        { name: 'app', endpoints: [{ address: stays.address }] },
      ],
    }));
    cleanup.push(() => gw.stop());
    // Warm the connection to the endpoint that stays.
    expect(await (await request(`${gw.url}/warm`)).body.text()).toBe('stays');
    const warmConnections = stays.connections;
    const inFlight = request(`${gw.url}/slow`);
    await new Promise((r) => setTimeout(r, 200));
    // Remove the slow endpoint while its request is in flight.
    const put = await request(`${gw.admin}/clusters/slow`, { method: 'PUT', body: JSON.stringify({ endpoints: [{ address: stays.address }] }) });
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
});
