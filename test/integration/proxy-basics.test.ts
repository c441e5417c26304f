import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import { request, Agent } from 'undici';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, closedPort, okHandler, type TestUpstream } from '../helpers/upstream.js';

let gw: InProcessGateway;
let up: TestUpstream;
let hang: TestUpstream;
let flaky: TestUpstream;
let mirror: TestUpstream;
let refused: number;
const agent = new Agent({ keepAliveTimeout: 10 });

beforeAll(async () => {
  up = await startUpstream(okHandler('up'));
  hang = await startUpstream(() => {}); // never answers
  let n = 0;
  flaky = await startUpstream((req, res) => {
    n++;
    res.writeHead(n % 2 === 1 ? 503 : 200, { 'content-type': 'text/plain' });
    res.end(`attempt ${n}`);
  });
  mirror = await startUpstream(okHandler('mirror'));
  refused = await closedPort();
  gw = await startInProcess(baseConfig({
    routes: [
      { name: 'plain', match: { path: { prefix: '/plain' } }, cluster: 'up', requestHeaders: { set: { 'x-added': 'yes' }, remove: ['x-secret'] }, responseHeaders: { add: { 'x-gw': 'meridian' } } },
      { name: 'rewrite', match: { path: { prefix: '/old' } }, rewrite: { pathPrefix: '/new' }, cluster: 'up' },
      { name: 'refused', match: { path: { prefix: '/refused' } }, cluster: 'dead' },
      { name: 'hang', match: { path: { prefix: '/hang' } }, cluster: 'hang', timeout: '300ms' },
      { name: 'retry-connect', match: { path: { prefix: '/retry-connect' } }, cluster: 'dead-then-up', retry: { attempts: 2, on: ['connect-failure'], backoff: { base: '5ms' } } },
      { name: 'retry-5xx', match: { path: { prefix: '/retry-5xx' } }, cluster: 'flaky', retry: { attempts: 2, on: ['5xx'], backoff: { base: '5ms' } } },
      { name: 'no-retry', match: { path: { prefix: '/no-retry' } }, cluster: 'flaky' },
      { name: 'mirrored', match: { path: { prefix: '/mirrored' } }, cluster: 'up', mirror: { cluster: 'mirror', percent: 100 } },
      { name: 'redirect', match: { path: { prefix: '/moved' } }, redirect: { host: 'new.example', status: 301 } },
      { name: 'small-body', match: { path: { prefix: '/upload-small' } }, cluster: 'up', maxBodyBytes: 10 },
    ],
    clusters: [
      { name: 'up', endpoints: [{ address: up.address }] },
      { name: 'dead', endpoints: [{ address: `127.0.0.1:${refused}` }] },
      { name: 'hang', endpoints: [{ address: hang.address }] },
      { name: 'dead-then-up', endpoints: [{ address: `127.0.0.1:${refused}` }, { address: up.address }] },
      { name: 'flaky', endpoints: [{ address: flaky.address }] },
      { name: 'mirror', endpoints: [{ address: mirror.address }] },
    ],
  }));
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([up, hang, flaky, mirror].map((u) => u?.close()));
  await agent.close();
});

const get = (path: string, headers: Record<string, string> = {}) => request(`${gw.url}${path}`, { dispatcher: agent, headers });

describe('proxying HTTP/1.1', () => {
  it('forwards to the upstream and adds forwarding headers', async () => {
    const r = await get('/plain/a?b=1', { 'x-forwarded-for': '6.6.6.6', 'x-secret': 's', 'x-keep': 'k' });
    expect(r.statusCode).toBe(200);
    expect(await r.body.json()).toEqual({ upstream: 'up', path: '/plain/a?b=1' });
    expect(r.headers['x-gw']).toBe('meridian');
    const seen = up.requests.at(-1)!;
    // At the edge (trustForwardedHeaders false) the client's XFF is replaced, not appended.
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers.via).toBe('1.1 meridian');
    expect(seen.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(seen.headers['x-added']).toBe('yes');
    expect(seen.headers['x-secret']).toBeUndefined();
    expect(seen.headers['x-keep']).toBe('k');
  });

  it('keeps an incoming request id and traceparent', async () => {
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await (await get('/plain/id', { 'x-request-id': 'abc-123', traceparent: tp })).body.dump();
    const seen = up.requests.at(-1)!;
    expect(seen.headers['x-request-id']).toBe('abc-123');
    expect(seen.headers.traceparent).toBe(tp);
  });

  it('strips hop-by-hop headers and the headers Connection names', async () => {
    const sock = net.connect(Number(gw.url.split(':').at(-1)), '127.0.0.1');
    const before = up.requests.length;
    sock.write('GET /plain/hop HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic x\r\nX-Forwarded-Client-Cert: forged\r\n\r\n');
    const reply = await new Promise<string>((r) => sock.once('data', (d) => r(d.toString())));
    sock.destroy();
    expect(reply).toMatch(/^HTTP\/1.1 200/);
    expect(up.requests.length).toBe(before + 1);
    const h = up.requests.at(-1)!.headers;
    expect(h['x-hop']).toBeUndefined();
    expect(h['keep-alive']).toBeUndefined();
    expect(h['proxy-authorization']).toBeUndefined();
    expect(h['x-forwarded-client-cert']).toBeUndefined();
    expect(h.te).toBe('trailers');
  });

  it('rewrites the path prefix', async () => {
    const r = await get('/old/thing');
    expect(await r.body.json()).toEqual({ upstream: 'up', path: '/new/thing' });
  });

  it('answers 404 with the error code when no route matches', async () => {
    const r = await get('/nothing-here');
    expect(r.statusCode).toBe(404);
    expect(r.headers['x-meridian-error']).toBe('no_route');
    await r.body.dump();
  });

  it('answers 502 when the upstream refuses connections', async () => {
    const r = await get('/refused');
    expect(r.statusCode).toBe(502);
    expect(r.headers['x-meridian-error']).toBe('upstream_connect_failure');
    await r.body.dump();
  });

  it('answers 504 when the upstream hangs past the route timeout', async () => {
    const t0 = Date.now();
    const r = await get('/hang');
    expect(r.statusCode).toBe(504);
    expect(r.headers['x-meridian-error']).toBe('upstream_timeout');
    expect(Date.now() - t0).toBeLessThan(3000);
    await r.body.dump();
  });

  it('retries a connect failure on the other endpoint', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await get('/retry-connect');
      expect(r.statusCode).toBe(200);
      await r.body.dump();
    }
  });

  it('retries a 503 and returns the second answer', async () => {
    const r = await get('/retry-5xx');
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toMatch(/attempt \d+/);
  });

  it('does not retry without a retry policy', async () => {
    const statuses = [];
    for (let i = 0; i < 2; i++) {
      const r = await get('/no-retry');
      statuses.push(r.statusCode);
      await r.body.dump();
    }
    expect(statuses.sort()).toEqual([200, 503]);
  });

  it('mirrors requests without affecting the primary response', async () => {
    const before = mirror.requests.length;
    const r = await get('/mirrored/x');
    expect(await r.body.json()).toEqual({ upstream: 'up', path: '/mirrored/x' });
    const deadline = Date.now() + 2000;
    while (mirror.requests.length === before && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    expect(mirror.requests.length).toBe(before + 1);
    expect(mirror.requests.at(-1)!.headers.host).toMatch(/-shadow$/);
  });

  it('redirects', async () => {
    const r = await get('/moved/p?q=1');
    expect(r.statusCode).toBe(301);
    expect(r.headers.location).toBe('http://new.example/moved/p?q=1');
    await r.body.dump();
  });

  it('refuses a body over the route limit with 413 before forwarding', async () => {
    const before = up.requests.length;
    const r = await request(`${gw.url}/upload-small`, { dispatcher: agent, method: 'POST', body: 'x'.repeat(100) });
    expect(r.statusCode).toBe(413);
    await r.body.dump();
    expect(up.requests.length).toBe(before);
  });
});
