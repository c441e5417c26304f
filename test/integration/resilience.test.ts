import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { request, Agent } from 'undici';
import { startInProcess, baseConfig, waitFor, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let gw: InProcessGateway;
let slow: TestUpstream;
let fast: TestUpstream;
let slowClosed = 0;

beforeAll(async () => {
  slow = await startUpstream((req, res) => {
    const t = setTimeout(() => res.end('slow'), 1500);
    res.on('close', () => {
      clearTimeout(t);
      if (!res.writableFinished) slowClosed++;
    });
  });
  fast = await startUpstream((_req, res) => res.end('fast'));
  gw = await startInProcess(
    baseConfig({
      gateway: { name: 't', workers: 1, accessLog: { enabled: false }, limits: { maxInFlightRequests: 3 } },
      routes: [
        {
          name: 'hedged',
          match: { path: { prefix: '/hedged' } },
          cluster: 'both',
          hedge: { delay: '50ms' },
          timeout: '5s',
        },
        { name: 'slow', match: { path: { prefix: '/slow' } }, cluster: 'slow', timeout: '5s' },
      ],
      clusters: [
        { name: 'both', endpoints: [{ address: slow.address }, { address: fast.address }] },
        { name: 'slow', endpoints: [{ address: slow.address }] },
      ],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  await slow?.close();
  await fast?.close();
});

describe('hedging and overload', () => {
  it('hedges a slow attempt to another endpoint and cancels the loser', async () => {
    const bodies: string[] = [];
    const t0 = Date.now();
    for (let i = 0; i < 6; i++) {
      const r = await request(`${gw.url}/hedged/${i}`);
      bodies.push(await r.body.text());
    }
    expect(bodies).toEqual(Array(6).fill('fast'));
    // Without hedging, half of these would wait 1.5 s for the slow endpoint.
    expect(Date.now() - t0).toBeLessThan(1500);
    const hedgedAtSlow = slow.requests.filter((r) => r.url.startsWith('/hedged')).length;
    expect(hedgedAtSlow).toBeGreaterThan(0);
    const end = Date.now() + 2000;
    while (slowClosed < hedgedAtSlow && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(slowClosed).toBe(hedgedAtSlow);
  });

  it('answers a fast 503 over the in-flight cap instead of queueing', async () => {
    const agent = new Agent({ connections: 10 });
    const pending = Array.from({ length: 3 }, (_, i) => request(`${gw.url}/slow/${i}`, { dispatcher: agent }));
    // All three are in flight: the slow upstream holds them.
    await waitFor(() => slow.requests.filter((r) => r.url.startsWith('/slow/')).length === 3, 2000, 10);
    const t0 = Date.now();
    const over = await request(`${gw.url}/slow/over`, { dispatcher: agent });
    expect(over.statusCode).toBe(503);
    expect(over.headers['x-meridian-overloaded']).toBe('true');
    expect(Date.now() - t0).toBeLessThan(200);
    await over.body.dump();
    for (const p of pending) expect((await p).statusCode).toBe(200);
    await agent.close();
  });
});
