import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { startInProcess, baseConfig, waitFor, type InProcessGateway } from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';

/** HTTP/2 upstream connection handling (src/pool/h2-origin.ts) against real node:http2 servers. */
let gw: InProcessGateway;
let up: http2.Http2Server;
let sessions = 0;
let healthChecks = 0;
const upstreamSessions: http2.ServerHttp2Session[] = [];

beforeAll(async () => {
  up = http2.createServer((req, res) => {
    if (req.url === '/healthz') {
      healthChecks++;
      return res.end('ok');
    }
    if (req.url?.startsWith('/slow')) return void setTimeout(() => res.end('late'), 2000);
    if (req.url?.startsWith('/goaway')) {
      // Politely retire the session (GOAWAY before the response's frames, so the gateway has taken it
      // by the time the response reaches the client): the next request must open a new one.
      req.stream.session!.goaway();
      res.end('bye');
      return;
    }
    res.end(`h2 ${req.url}`);
  });
  up.on('session', (s) => {
    sessions++;
    upstreamSessions.push(s);
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const addr = `127.0.0.1:${(up.address() as AddressInfo).port}`;
  const dead = `127.0.0.1:${await closedPort()}`;
  gw = await startInProcess(
    baseConfig({
      routes: [
        { name: 'dead', match: { path: { prefix: '/dead' } }, cluster: 'dead' },
        {
          name: 'failover',
          match: { path: { prefix: '/failover' } },
          cluster: 'failover',
          retry: { attempts: 1, on: ['connect-failure'], backoff: { base: '5ms' } },
        },
        { name: 'slow', match: { path: { prefix: '/slow' } }, cluster: 'h2', timeout: '300ms' },
        { name: 'all', match: { path: { prefix: '/' } }, cluster: 'h2' },
      ],
      clusters: [
        {
          name: 'h2',
          protocol: 'http2',
          endpoints: [{ address: addr }],
          healthCheck: {
            http: { path: '/healthz' },
            interval: '100ms',
            timeout: '500ms',
            healthyThreshold: 1,
            unhealthyThreshold: 1,
          },
        },
        { name: 'dead', protocol: 'http2', endpoints: [{ address: dead }] },
        {
          name: 'failover',
          protocol: 'http2',
          endpoints: [
            { address: dead, priority: 0 },
            { address: addr, priority: 1 },
          ],
        },
      ],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  for (const s of upstreamSessions) s.destroy();
  up?.close();
});

describe('HTTP/2 upstream connections', () => {
  it('multiplexes concurrent requests over one session', async () => {
    const before = sessions;
    const rs = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request(`${gw.url}/m/${i}`).then(async (r) => [r.statusCode, await r.body.text()]),
      ),
    );
    rs.forEach(([status, body], i) => {
      expect(status).toBe(200);
      expect(body).toBe(`h2 /m/${i}`);
    });
    // The health checker has its own pool (one session); the data plane at most one more.
    expect(sessions - before).toBeLessThanOrEqual(1);
  });

  it('a refused connection answers 502 upstream_connect_failure', async () => {
    const r = await request(`${gw.url}/dead/x`);
    expect(r.statusCode).toBe(502);
    expect(r.headers['x-meridian-error']).toBe('upstream_connect_failure');
    await r.body.dump();
  });

  it('a connect failure is retried on the next endpoint', async () => {
    const r = await request(`${gw.url}/failover/x`);
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('h2 /failover/x');
  });

  it('the route timeout answers 504 upstream_timeout', async () => {
    const r = await request(`${gw.url}/slow`);
    expect(r.statusCode).toBe(504);
    expect(r.headers['x-meridian-error']).toBe('upstream_timeout');
    await r.body.dump();
  });

  it('after the upstream sends GOAWAY, the next request opens a new session and succeeds', async () => {
    const r1 = await request(`${gw.url}/goaway`);
    expect(await r1.body.text()).toBe('bye');
    const before = sessions;
    const r2 = await request(`${gw.url}/after-goaway`);
    expect(r2.statusCode).toBe(200);
    expect(await r2.body.text()).toBe('h2 /after-goaway');
    expect(sessions).toBe(before + 1);
  });

  it('HTTP health checks run over HTTP/2 and pass', async () => {
    const seen = healthChecks;
    await waitFor(() => (healthChecks >= seen + 2 ? true : undefined));
    const s = (await (await request(`${gw.admin}/clusters/h2/status`)).body.json()) as {
      endpoints: Array<{ flags: string[] }>;
    };
    expect(s.endpoints[0].flags).not.toContain('failed_active_hc');
  });
});
