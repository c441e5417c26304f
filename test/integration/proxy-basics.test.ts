import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import { request, Agent } from 'undici';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, WebSocket } from 'ws';
import {
  startInProcess,
  spawnGateway,
  waitFor,
  baseConfig,
  type InProcessGateway,
  type SpawnedGateway,
} from '../helpers/gateway.js';
import { startUpstream, closedPort, okHandler, type TestUpstream } from '../helpers/upstream.js';

let gw: InProcessGateway;
let up: TestUpstream;
let hang: TestUpstream;
let flaky: TestUpstream;
let flakyBody: TestUpstream;
const flakyBodies: string[] = [];
let mirror: TestUpstream;
let refused: number;
const mirrorBodies: string[] = [];
/** A raw TCP upstream: keeps the bytes of each request head, answers with non-ASCII header bytes. */
let rawUp: net.Server;
const rawHeads: Buffer[] = [];
const RAW_REPLY = Buffer.concat([
  Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Reply: '),
  Buffer.from([0xc3, 0xa9, 0x74, 0xe9]),
  Buffer.from('\r\n\r\nok'),
]);
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
  // Every other request a 503; each answer echoes the body it got.
  flakyBody = await startUpstream((req, res, body) => {
    flakyBodies.push(body.toString());
    res.writeHead(flakyBodies.length % 2 === 1 ? 503 : 200, { 'content-type': 'text/plain' });
    res.end(body);
  });
  mirror = await startUpstream((req, res, body) => {
    mirrorBodies.push(body.toString());
    okHandler('mirror')(req, res, body);
  });
  refused = await closedPort();
  rawUp = net.createServer((sock) => {
    let head = Buffer.alloc(0);
    sock.on('data', (d) => {
      head = Buffer.concat([head, d]);
      if (head.includes('\r\n\r\n')) {
        rawHeads.push(head);
        sock.end(RAW_REPLY);
      }
    });
  });
  await new Promise<void>((r) => rawUp.listen(0, '127.0.0.1', r));
  gw = await startInProcess(
    baseConfig({
      routes: [
        {
          name: 'plain',
          match: { path: { prefix: '/plain' } },
          cluster: 'up',
          requestHeaders: { set: { 'x-added': 'yes' }, remove: ['x-secret'] },
          responseHeaders: { add: { 'x-gw': 'meridian' } },
        },
        { name: 'rewrite', match: { path: { prefix: '/old' } }, rewrite: { pathPrefix: '/new' }, cluster: 'up' },
        { name: 'refused', match: { path: { prefix: '/refused' } }, cluster: 'dead' },
        { name: 'hang', match: { path: { prefix: '/hang' } }, cluster: 'hang', timeout: '300ms' },
        {
          name: 'retry-connect',
          match: { path: { prefix: '/retry-connect' } },
          cluster: 'dead-then-up',
          retry: { attempts: 2, on: ['connect-failure'], backoff: { base: '5ms' } },
        },
        {
          name: 'retry-5xx',
          match: { path: { prefix: '/retry-5xx' } },
          cluster: 'flaky',
          retry: { attempts: 2, on: ['5xx'], backoff: { base: '5ms' } },
        },
        { name: 'no-retry', match: { path: { prefix: '/no-retry' } }, cluster: 'flaky' },
        {
          name: 'retry-post',
          match: { path: { prefix: '/retry-post' } },
          cluster: 'flaky-body',
          retry: { attempts: 1, on: ['5xx'], backoff: { base: '5ms' } },
        },
        {
          name: 'mirrored',
          match: { path: { prefix: '/mirrored' } },
          cluster: 'up',
          mirror: { cluster: 'mirror', percent: 100, maxBodyBytes: 1000 },
        },
        { name: 'redirect', match: { path: { prefix: '/moved' } }, redirect: { host: 'new.example', status: 301 } },
        { name: 'redirect-port', match: { path: { prefix: '/port-moved' } }, redirect: { port: 8443 } },
        { name: 'redirect-https', match: { path: { prefix: '/to-https' } }, redirect: { scheme: 'https', port: 443 } },
        {
          name: 'redirect-prefix',
          match: { path: { prefix: '/old-docs/' } },
          redirect: { pathPrefix: '/docs/v2/', status: 308 },
        },
        { name: 'raw-bytes', match: { path: { prefix: '/raw-bytes' } }, cluster: 'raw' },
        { name: 'small-body', match: { path: { prefix: '/upload-small' } }, cluster: 'up', maxBodyBytes: 10 },
      ],
      clusters: [
        { name: 'up', endpoints: [{ address: up.address }] },
        { name: 'dead', endpoints: [{ address: `127.0.0.1:${refused}` }] },
        { name: 'hang', endpoints: [{ address: hang.address }] },
        { name: 'dead-then-up', endpoints: [{ address: `127.0.0.1:${refused}` }, { address: up.address }] },
        { name: 'flaky', endpoints: [{ address: flaky.address }] },
        { name: 'flaky-body', endpoints: [{ address: flakyBody.address }] },
        { name: 'mirror', endpoints: [{ address: mirror.address }] },
        { name: 'raw', endpoints: [{ address: `127.0.0.1:${(rawUp.address() as AddressInfo).port}` }] },
      ],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([up, hang, flaky, flakyBody, mirror].map((u) => u?.close()));
  rawUp?.close();
  await agent.close();
});

const get = (path: string, headers: Record<string, string> = {}) =>
  request(`${gw.url}${path}`, { dispatcher: agent, headers });

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
    // No gateway.tracing here: like Envoy without a tracer, the gateway invents no trace context (a
    // sampled one would make every parent-based sampler behind it record the request).
    expect(seen.headers.traceparent).toBeUndefined();
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
    sock.write(
      'GET /plain/hop HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic x\r\nX-Forwarded-Client-Cert: forged\r\n\r\n',
    );
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

  it('passes non-ASCII header bytes through unchanged in both directions', async () => {
    const sock = net.connect(Number(gw.url.split(':').at(-1)), '127.0.0.1');
    const name = Buffer.from([0x63, 0x61, 0x66, 0xc3, 0xa9, 0xff]); // "café" in UTF-8, then an obs-text byte
    sock.write(
      Buffer.concat([
        Buffer.from('GET /raw-bytes HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Name: '),
        name,
        Buffer.from('\r\n\r\n'),
      ]),
    );
    const chunks: Buffer[] = [];
    for await (const c of sock) chunks.push(c as Buffer);
    const reply = Buffer.concat(chunks);
    expect(reply.subarray(0, 15).toString()).toBe('HTTP/1.1 200 OK');
    expect(
      reply.includes(
        Buffer.concat([Buffer.from('X-Reply: '), Buffer.from([0xc3, 0xa9, 0x74, 0xe9]), Buffer.from('\r\n')]),
      ),
    ).toBe(true);
    expect(rawHeads.at(-1)!.includes(Buffer.concat([Buffer.from('X-Name: '), name, Buffer.from('\r\n')]))).toBe(true);
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

  it('retries a POST whose small body was already sent: the body is kept (retry.maxBodyBytes, 64 KiB by default) and sent whole again', async () => {
    const r = await request(`${gw.url}/retry-post`, { dispatcher: agent, method: 'POST', body: 'twelve bytes' });
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('twelve bytes');
    expect(flakyBodies).toEqual(['twelve bytes', 'twelve bytes']);
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

  it('mirrors a body within the mirror limit, and sends a larger one to the primary only', async () => {
    const post = (body: string, chunked = false) =>
      request(`${gw.url}/mirrored/post`, {
        dispatcher: agent,
        method: 'POST',
        // A generator body has no length: undici sends it chunked.
        body: chunked
          ? (async function* () {
              yield body.slice(0, 10);
              yield body.slice(10);
            })()
          : body,
      });
    const before = mirror.requests.length;
    const small = await post('a'.repeat(900));
    expect(small.statusCode).toBe(200);
    await small.body.dump();
    await waitFor(() => mirror.requests.length === before + 1, 2000, 10);
    expect(mirrorBodies.at(-1)).toBe('a'.repeat(900));
    expect(up.requests.at(-1)!.bodyBytes).toBe(900);

    const chunked = await post('c'.repeat(500), true);
    await chunked.body.dump();
    await waitFor(() => mirror.requests.length === before + 2, 2000, 10);
    expect(mirrorBodies.at(-1)).toBe('c'.repeat(500));

    // Over the limit by Content-Length, and over it only once streamed (chunked): primary only.
    for (const big of [await post('b'.repeat(5000)), await post('d'.repeat(5000), true)]) {
      expect(big.statusCode).toBe(200);
      await big.body.dump();
      expect(up.requests.at(-1)!.bodyBytes).toBe(5000);
    }
    await new Promise((r) => setTimeout(r, 200)); // the point: no mirror of the over-limit bodies within this window
    expect(mirror.requests.length).toBe(before + 2);
  });

  it('redirects', async () => {
    const r = await get('/moved/p?q=1');
    expect(r.statusCode).toBe(301);
    expect(r.headers.location).toBe('http://new.example/moved/p?q=1');
    await r.body.dump();
  });

  it("redirects with a port: the request host without its port, then the port unless it is the scheme's default", async () => {
    const host = new URL(gw.url).host;
    const hostname = new URL(gw.url).hostname;
    const r = await get('/port-moved/a');
    expect(r.statusCode).toBe(302);
    expect(r.headers.location).toBe(`http://${hostname}:8443/port-moved/a`);
    await r.body.dump();
    const s = await get('/to-https/b');
    expect(s.headers.location).toBe(`https://${hostname}/to-https/b`);
    expect(host).toContain(':');
    await s.body.dump();
  });

  it('redirect.pathPrefix replaces the matched prefix in Location and keeps the rest of the path and the query', async () => {
    const r = await get('/old-docs/guide/intro?lang=en');
    expect(r.statusCode).toBe(308);
    expect(r.headers.location).toBe(`http://${new URL(gw.url).host}/docs/v2/guide/intro?lang=en`);
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

/**
 * Every downstream response is counted once in meridian_downstream_rq_total and written once to the
 * access log: proxied, direct, redirected, refused before routing, unrouted, overloaded, and each
 * upgrade when its tunnel ends. Upgrades are in flight while open: maxInFlightRequests and drain
 * see them.
 */
describe('accounting: metrics, access log and in-flight', () => {
  let sgw: SpawnedGateway;
  let wsServer: http.Server;
  const open: WebSocket[] = [];

  beforeAll(async () => {
    wsServer = http.createServer((_req, res) => res.end('plain'));
    new WebSocketServer({ server: wsServer }).on('connection', (ws) =>
      ws.on('message', (m) => ws.send(`echo:${String(m)}`)),
    );
    await new Promise<void>((r) => wsServer.listen(0, '127.0.0.1', r));
    sgw = await spawnGateway(
      baseConfig({
        gateway: {
          name: 'acct',
          workers: 1,
          accessLog: { enabled: true },
          drainTimeout: '20s',
          limits: { maxInFlightRequests: 1 },
        },
        routes: [
          { name: 'echo', match: { path: { exact: '/echo' } }, directResponse: { status: 200, body: 'hi' } },
          { name: 'moved', match: { path: { prefix: '/moved' } }, redirect: { host: 'new.example', status: 302 } },
          { name: 'ws', match: { path: { prefix: '/ws' } }, cluster: 'ws' },
        ],
        clusters: [{ name: 'ws', endpoints: [{ address: `127.0.0.1:${(wsServer.address() as AddressInfo).port}` }] }],
      }),
    );
  });

  afterAll(async () => {
    for (const ws of open) ws.terminate();
    await sgw?.stop();
    wsServer?.closeAllConnections();
    await new Promise((r) => wsServer?.close(r));
  });

  const metrics = async () => (await request(`${sgw.admin}/metrics`)).body.text();
  const count = (text: string, route: string, cls: string) =>
    Number(
      new RegExp(`meridian_downstream_rq_total\\{route="${route}",status_class="${cls}"\\} (\\d+)`).exec(text)?.[1] ??
        0,
    );
  const accessLines = () =>
    sgw.output.flatMap((l) => {
      try {
        const j = JSON.parse(l);
        return j.type === 'access' ? [j] : [];
      } catch {
        return [];
      }
    });
  const access = (id: string) =>
    waitFor(() =>
      accessLines().filter((l) => l.requestId === id).length
        ? accessLines().filter((l) => l.requestId === id)
        : undefined,
    );
  const send = async (path: string, id: string) => {
    const r = await request(`${sgw.url}${path}`, { headers: { 'x-request-id': id } });
    await r.body.dump();
    return r.statusCode;
  };
  async function openWs(id: string): Promise<WebSocket> {
    const ws = new WebSocket(`${sgw.url.replace('http', 'ws')}/ws/chat`, { headers: { 'x-request-id': id } });
    open.push(ws);
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    const reply = new Promise<string>((r) => ws.once('message', (m) => r(String(m))));
    ws.send('hi');
    expect(await reply).toBe('echo:hi');
    return ws;
  }

  it('counts and access-logs direct responses and redirects', async () => {
    const before = await metrics();
    expect(await send('/echo', 'direct-1')).toBe(200);
    expect(await send('/moved/x', 'redirect-1')).toBe(302);
    expect(await access('direct-1')).toEqual([expect.objectContaining({ route: 'echo', status: 200, path: '/echo' })]);
    expect(await access('redirect-1')).toEqual([expect.objectContaining({ route: 'moved', status: 302 })]);
    const after = await metrics();
    expect(count(after, 'echo', '2xx')).toBe(count(before, 'echo', '2xx') + 1);
    expect(count(after, 'moved', '3xx')).toBe(count(before, 'moved', '3xx') + 1);
  });

  it('counts and access-logs unrouted requests and requests refused before routing', async () => {
    const before = await metrics();
    expect(await send('/nowhere', 'unrouted-1')).toBe(404);
    expect(await send('/a%zz', 'malformed-1')).toBe(400);
    expect(await access('unrouted-1')).toEqual([expect.objectContaining({ status: 404, error: 'no_route' })]);
    expect(await access('malformed-1')).toEqual([expect.objectContaining({ status: 400, error: 'bad_request' })]);
    const after = await metrics();
    // Requests without a route are counted under route="".
    expect(count(after, '', '4xx')).toBe(count(before, '', '4xx') + 2);
    // Without a client id, the gateway's own answers are logged with a generated one.
    const r = await request(`${sgw.url}/nowhere-anonymous`);
    await r.body.dump();
    const line = await waitFor(() => accessLines().find((l) => l.path === '/nowhere-anonymous'));
    expect(line.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  it('holds an upgrade in flight while it is open: maxInFlightRequests refuses others, counted and logged as overloaded', async () => {
    const ws = await openWs('ws-1');
    const before = await metrics();
    expect(await send('/echo', 'over-1')).toBe(503);
    expect(await access('over-1')).toEqual([
      expect.objectContaining({ route: 'echo', status: 503, error: 'overloaded' }),
    ]);
    expect(count(await metrics(), 'echo', '5xx')).toBe(count(before, 'echo', '5xx') + 1);
    ws.close();
    // The upgrade is logged once, when it ends, and counted as 1xx.
    expect(await access('ws-1')).toEqual([expect.objectContaining({ route: 'ws', status: 101, cluster: 'ws' })]);
    expect(count(await metrics(), 'ws', '1xx')).toBe(count(before, 'ws', '1xx') + 1);
    expect(await waitFor(async () => (await send('/echo', 'after-ws')) === 200)).toBe(true);
  });

  it('drains an open upgrade: SIGTERM waits for it, then the process exits once it closes', async () => {
    const ws = await openWs('ws-drain');
    sgw.proc.kill('SIGTERM');
    // The point: the process does not exit within this fixed window while the upgrade is open.
    const exited = await Promise.race([
      sgw.exited.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 800)),
    ]);
    expect(exited).toBe(false);
    const reply = new Promise<string>((r) => ws.once('message', (m) => r(String(m))));
    ws.send('still there');
    expect(await reply).toBe('echo:still there');
    ws.close();
    expect(
      await Promise.race([sgw.exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 10_000))]),
    ).toBe(true);
  });
});
