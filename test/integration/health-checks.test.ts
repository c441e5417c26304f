import { describe, it, expect, afterEach } from 'vitest';
import http from 'node:http';
import { request, Agent } from 'undici';
import { startInProcess, baseConfig, waitFor, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, closedPort, type TestUpstream } from '../helpers/upstream.js';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

interface EndpointStatus {
  address: string;
  health: string;
  flags: string[];
  activeHealthCheck: string;
}
interface ClusterStatus {
  lb: { healthyPriorityLoad: number[]; degradedPriorityLoad: number[]; panic: boolean[] };
  endpoints: EndpointStatus[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function status(gw: InProcessGateway, cluster = 'app'): Promise<ClusterStatus> {
  const res = await request(`${gw.admin}/clusters/${cluster}/status`);
  expect(res.statusCode).toBe(200);
  return (await res.body.json()) as ClusterStatus;
}

async function endpoint(gw: InProcessGateway, address: string, cluster = 'app'): Promise<EndpointStatus> {
  const e = (await status(gw, cluster)).endpoints.find((x) => x.address === address);
  if (!e) throw new Error(`no endpoint ${address}`);
  return e;
}

/** An upstream whose /healthz answer is decided by `healthz`; other paths answer 200 with `name`. */
async function upstream(
  name: string,
  healthz: (req: http.IncomingMessage, res: http.ServerResponse) => void = (_q, s) => {
    s.writeHead(200);
    s.end();
  },
): Promise<TestUpstream> {
  const up = await startUpstream((req, res) => {
    if (req.url === '/healthz') return healthz(req, res);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(name);
  });
  cleanup.push(() => up.close());
  return up;
}

const traffic = (up: TestUpstream) => up.requests.filter((r) => r.url !== '/healthz').length;
const checks = (up: TestUpstream) => up.requests.filter((r) => r.url === '/healthz').length;

async function gateway(
  clusters: unknown[],
  routes: unknown[] = [{ name: 'all', match: { path: { prefix: '/' } }, cluster: 'app' }],
): Promise<InProcessGateway> {
  const gw = await startInProcess(baseConfig({ routes, clusters }));
  cleanup.push(() => gw.stop());
  return gw;
}

/** Send n sequential requests; returns the response bodies counted by body (non-200 as `status:<code>`). */
async function send(gw: InProcessGateway, n: number, path = '/x'): Promise<Record<string, number>> {
  const agent = new Agent();
  const seen: Record<string, number> = {};
  try {
    for (let i = 0; i < n; i++) {
      const res = await request(`${gw.url}${path}`, { dispatcher: agent });
      const key = res.statusCode === 200 ? await res.body.text() : (await res.body.dump(), `status:${res.statusCode}`);
      seen[key] = (seen[key] ?? 0) + 1;
    }
  } finally {
    await agent.close();
  }
  return seen;
}

/**
 * Poll the admin status of one endpoint until `done(failing)` while recording, for each poll, the
 * value of `count()` and whether the endpoint was failing. Only polls during which `count()` did
 * not move are kept ("stable"), so a poll is never attributed to the wrong number of checks.
 */
async function watch(
  gw: InProcessGateway,
  address: string,
  count: () => number,
  done: (failing: boolean, n: number) => boolean,
  timeoutMs = 6000,
) {
  const polls: Array<{ n: number; failing: boolean }> = [];
  const end = Date.now() + timeoutMs;
  for (;;) {
    const before = count();
    const e = await endpoint(gw, address);
    const failing = e.flags.includes('failed_active_hc');
    if (count() === before) {
      polls.push({ n: before, failing });
      if (done(failing, before)) return polls;
    }
    if (Date.now() > end) throw new Error(`condition not met in time; polls: ${JSON.stringify(polls.slice(-5))}`);
    await sleep(15); // poll step of this condition wait (it records every poll, so it cannot be waitFor)
  }
}

describe('active health checks (in-process gateway, real upstreams)', () => {
  it('TCP check: a closed port is failed_active_hc and gets no traffic; it recovers after healthyThreshold (2) passes once a server listens there', async () => {
    const a = await upstream('a');
    const b = await upstream('b');
    const port = await closedPort();
    const c = `127.0.0.1:${port}`;
    const gw = await gateway([
      {
        name: 'app',
        endpoints: [{ address: a.address }, { address: b.address }, { address: c }],
        healthCheck: { tcp: {}, interval: '250ms', timeout: '500ms', healthyThreshold: 2, unhealthyThreshold: 2 },
      },
    ]);

    const before = await status(gw);
    const byAddr = Object.fromEntries(before.endpoints.map((e) => [e.address, e]));
    expect(byAddr[c]).toMatchObject({ health: 'unhealthy', flags: ['failed_active_hc'], activeHealthCheck: 'failing' });
    expect(byAddr[a.address]).toMatchObject({ health: 'healthy', flags: [], activeHealthCheck: 'passing' });
    expect(byAddr[b.address]).toMatchObject({ health: 'healthy', flags: [], activeHealthCheck: 'passing' });
    // TCP checks are connect-only: no HTTP request reaches the live upstreams from the checker.
    expect(a.requests).toHaveLength(0);

    const first = await send(gw, 40);
    expect(first).toEqual({ a: 20, b: 20 });

    // Bring the port to life. Until the gateway sends it traffic, every connection is a health check.
    let connections = 0;
    const revived = http.createServer((_req, res) => res.end('c'));
    revived.on('connection', () => connections++);
    await new Promise<void>((resolve, reject) => {
      revived.once('error', reject);
      revived.listen(port, '127.0.0.1', () => resolve());
    });
    cleanup.push(
      () =>
        new Promise((r) => {
          revived.closeAllConnections();
          revived.close(() => r(undefined));
        }),
    );

    const polls = await watch(
      gw,
      c,
      () => connections,
      (failing) => !failing,
    );
    // One passing check is not enough (healthyThreshold 2): every stable poll after < 2 checks saw it failing.
    expect(polls.filter((p) => p.n < 2).every((p) => p.failing)).toBe(true);
    expect(polls.some((p) => p.n === 1)).toBe(true);
    expect(polls.at(-1)!.n).toBeGreaterThanOrEqual(2);
    expect(await endpoint(gw, c)).toMatchObject({ health: 'healthy', flags: [], activeHealthCheck: 'passing' });

    const after = await send(gw, 60);
    expect(after.c).toBeGreaterThanOrEqual(15);
    expect(after.a + after.b + after.c).toBe(60);
  });

  it('an endpoint change keeps the checker: the endpoint that stays is not checked again or reset, a new one gets its first check before traffic', async () => {
    const a = await upstream('a');
    const b = await upstream('b');
    const gw = await gateway([
      {
        name: 'app',
        endpoints: [{ address: a.address }],
        healthCheck: {
          http: { path: '/healthz' },
          interval: '60s',
          timeout: '1s',
          healthyThreshold: 1,
          unhealthyThreshold: 1,
        },
      },
    ]);
    expect(checks(a)).toBe(1);
    const put = await request(`${gw.admin}/clusters/app/endpoints/${b.address}`, { method: 'PUT', body: '{}' });
    expect(put.statusCode).toBe(200);
    await put.body.dump();
    // The change returned after b's first check; a (interval 60 s) was not checked again.
    expect(checks(b)).toBe(1);
    expect(checks(a)).toBe(1);
    expect(await endpoint(gw, b.address)).toMatchObject({ activeHealthCheck: 'passing' });
    const del = await request(`${gw.admin}/clusters/app/endpoints/${b.address}`, { method: 'DELETE' });
    expect(del.statusCode).toBe(200);
    await del.body.dump();
    expect(checks(a)).toBe(1);
    expect(await endpoint(gw, a.address)).toMatchObject({ activeHealthCheck: 'passing' });
  });

  it('HTTP check: expectedStatuses replaces the default [200]; an endpoint answering outside the set gets no traffic', async () => {
    const s204a = await upstream('s204a', (_q, s) => {
      s.writeHead(204);
      s.end();
    });
    const s204b = await upstream('s204b', (_q, s) => {
      s.writeHead(204);
      s.end();
    });
    const s200 = await upstream('s200');
    const endpoints = [s204a, s204b, s200].map((u) => ({ address: u.address }));
    const gw = await gateway(
      [
        {
          name: 'app',
          endpoints,
          healthCheck: { http: { path: '/healthz', expectedStatuses: [204] }, interval: '200ms', timeout: '500ms' },
        },
        { name: 'dflt', endpoints, healthCheck: { http: { path: '/healthz' }, interval: '200ms', timeout: '500ms' } },
      ],
      [
        { name: 'a', match: { path: { prefix: '/a' } }, cluster: 'app' },
        { name: 'd', match: { path: { prefix: '/d' } }, cluster: 'dflt' },
      ],
    );
    const flags = async (cluster: string) =>
      Object.fromEntries((await status(gw, cluster)).endpoints.map((e) => [e.address, e.flags]));
    expect(await flags('app')).toEqual({
      [s204a.address]: [],
      [s204b.address]: [],
      [s200.address]: ['failed_active_hc'],
    });
    // Default expectedStatuses is [200] only: 204 fails.
    expect(await flags('dflt')).toEqual({
      [s204a.address]: ['failed_active_hc'],
      [s204b.address]: ['failed_active_hc'],
      [s200.address]: [],
    });
    // The check sends GET path with the meridian user agent.
    const hc = s200.requests.find((r) => r.url === '/healthz')!;
    expect(hc.method).toBe('GET');
    expect(hc.headers['user-agent']).toBe('meridian-health-check');

    const viaApp = await send(gw, 40, '/a');
    expect(viaApp).toEqual({ s204a: 20, s204b: 20 });
    expect(traffic(s200)).toBe(0);
    // 1 of 3 healthy in 'dflt' is below the 50 % panic threshold: the level balances over all its hosts.
    expect((await status(gw, 'dflt')).lb.panic).toEqual([true]);
  });

  it('HTTP check: x-envoy-degraded marks the endpoint degraded (70/30 healthy/degraded load with 1 of each) until the header goes away', async () => {
    let degraded = true;
    const h = await upstream('h');
    const d = await upstream('d', (_q, s) => {
      s.writeHead(200, degraded ? { 'x-envoy-degraded': 'true' } : {});
      s.end();
    });
    const gw = await gateway([
      {
        name: 'app',
        endpoints: [{ address: h.address }, { address: d.address }],
        healthCheck: { http: { path: '/healthz' }, interval: '100ms', timeout: '500ms' },
      },
    ]);
    const st = await status(gw);
    expect(st.endpoints.find((e) => e.address === d.address)).toMatchObject({
      health: 'degraded',
      flags: ['degraded_active_hc'],
      activeHealthCheck: 'degraded',
    });
    expect(st.endpoints.find((e) => e.address === h.address)).toMatchObject({ health: 'healthy', flags: [] });
    expect(st.lb.healthyPriorityLoad).toEqual([70]);
    expect(st.lb.degradedPriorityLoad).toEqual([30]);

    const seen = await send(gw, 500);
    expect(seen.h + seen.d).toBe(500);
    expect(Math.abs((100 * seen.d) / 500 - 30)).toBeLessThanOrEqual(7);

    degraded = false;
    await waitFor(async () => (await endpoint(gw, d.address)).flags.length === 0, 5000, 25);
    const after = await status(gw);
    expect(after.lb.healthyPriorityLoad).toEqual([100]);
    expect(after.lb.degradedPriorityLoad).toEqual([0]);
  });

  it('thresholds: unhealthyThreshold 2 needs two failed checks, healthyThreshold 2 two passes, but a status outside expectedStatuses fails at once', async () => {
    let mode: 'ok' | 'reset' | '503' = 'ok';
    const hits = { ok: 0, reset: 0, '503': 0 };
    const up = await upstream('u', (req, res) => {
      hits[mode]++;
      if (mode === 'reset') return void req.socket.destroy();
      res.writeHead(mode === 'ok' ? 200 : 503);
      res.end();
    });
    const other = await upstream('other');
    const gw = await gateway([
      {
        name: 'app',
        endpoints: [{ address: up.address }, { address: other.address }],
        healthCheck: {
          http: { path: '/healthz' },
          interval: '300ms',
          timeout: '1s',
          healthyThreshold: 2,
          unhealthyThreshold: 2,
        },
      },
    ]);
    expect((await endpoint(gw, up.address)).flags).toEqual([]);

    // Connection resets count towards the threshold: still passing after one, failed after two.
    mode = 'reset';
    const down = await watch(
      gw,
      up.address,
      () => hits.reset,
      (failing) => failing,
    );
    expect(down.filter((p) => p.n < 2).every((p) => !p.failing)).toBe(true);
    expect(down.some((p) => p.n === 1)).toBe(true);
    expect(down.at(-1)!.n).toBe(2);
    expect((await endpoint(gw, up.address)).activeHealthCheck).toBe('failing');

    const okBase = hits.ok;
    mode = 'ok';
    const back = await watch(
      gw,
      up.address,
      () => hits.ok - okBase,
      (failing) => !failing,
    );
    expect(back.filter((p) => p.n < 2).every((p) => p.failing)).toBe(true);
    expect(back.some((p) => p.n === 1)).toBe(true);
    expect(back.at(-1)!.n).toBe(2);

    // 503 is outside expectedStatuses: one check is enough, unhealthyThreshold is ignored.
    mode = '503';
    const fast = await watch(
      gw,
      up.address,
      () => hits['503'],
      (failing) => failing,
    );
    expect(fast.at(-1)!.n).toBe(1);
  });

  it('checks run every `interval` while the cluster has no traffic (about 10 per second at 100ms)', async () => {
    const up = await upstream('u');
    await gateway([
      {
        name: 'app',
        endpoints: [{ address: up.address }],
        healthCheck: { http: { path: '/healthz' }, interval: '100ms', timeout: '500ms' },
      },
    ]);
    const start = checks(up);
    await sleep(1000); // the point: the number of checks within a fixed 1 s window (both bounds)
    const n = checks(up) - start;
    expect(n).toBeGreaterThanOrEqual(5);
    expect(n).toBeLessThanOrEqual(11);
  });

  // Envoy (HealthCheckerImplBase::interval) uses no_traffic_interval until the cluster has carried
  // traffic; the first request brings checks back to `interval` (workers report outcomes every ~100 ms).
  it('noTrafficInterval slows checks of a cluster that has carried no traffic, until its first request', async () => {
    const up = await upstream('u');
    const gw = await gateway([
      {
        name: 'app',
        endpoints: [{ address: up.address }],
        healthCheck: { http: { path: '/healthz' }, interval: '100ms', timeout: '500ms', noTrafficInterval: '10s' },
      },
    ]);
    const start = checks(up);
    await sleep(1000); // the point: no more than one check happens within this window
    expect(checks(up) - start).toBeLessThanOrEqual(1);
    const idle = checks(up);
    expect(await send(gw, 1)).toEqual({ u: 1 });
    // The worker's outcome report reaches the primary: the check waiting out the 10 s no-traffic
    // interval is brought forward to `interval`, so the next check arrives well before it.
    await waitFor(() => checks(up) > idle, 5000, 10);
    const busy = checks(up);
    await sleep(1000); // the point: the number of checks within a fixed 1 s window
    expect(checks(up) - busy).toBeGreaterThanOrEqual(5);
  });
});
