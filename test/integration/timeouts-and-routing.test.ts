import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { request, Agent } from 'undici';
import { startInProcess, waitFor, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, closedPort, okHandler, type TestUpstream } from '../helpers/upstream.js';

/*
 * Timeouts (header read, keep-alive, route timeout/idleTimeout, cluster connectTimeout), weighted
 * clusters, mirroring isolation and the "no retry once the body streamed" rule, against real
 * servers on loopback. Every wait is bounded; everything started here is closed in afterAll.
 */

const HEADERS_TIMEOUT_MS = 400;
const KEEPALIVE_TIMEOUT_MS = 500;
/** Node 20 closes an idle keep-alive socket keepAliveTimeout + 1 s after the response (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER). */
const NODE_KEEPALIVE_BUFFER_MS = 1000;
const IDLE_TIMEOUT_MS = 400;
const CONNECT_TIMEOUT_MS = 300;

const hasPython = spawnSync('python3', ['-c', 'pass'], { timeout: 10_000 }).status === 0;

let gw: InProcessGateway;
let port: number;
let up: TestUpstream; // plain 200
let hang: TestUpstream; // never answers (504 route)
let stall: TestUpstream; // headers + part of the body, then nothing
let steady: TestUpstream; // a slow body with short gaps
let wa: TestUpstream;
let wb: TestUpstream;
let wz: TestUpstream;
let mirrorHang: TestUpstream; // mirror target that never answers
let resetter: TestUpstream; // reads the whole request, then destroys the socket
let backup: TestUpstream; // the retry target
let refused: number;
/** A python listener with backlog 0 that never accepts: once its queue is full, connects hang. */
let blackhole: ChildProcess | undefined;
let blackholePort = 0;
const fillers: net.Socket[] = [];
const rawSockets = new Set<net.Socket>();
const agent = new Agent({ keepAliveTimeout: 10, connections: 16 });

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function startBlackhole(): Promise<number> {
  blackhole = spawn(
    'python3',
    [
      '-c',
      [
        'import socket, sys',
        's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
        'print(s.getsockname()[1], flush=True)',
        'sys.stdin.read()',
      ].join('\n'),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const p = await new Promise<number>((resolve, reject) => {
    blackhole!.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
    blackhole!.once('error', reject);
    setTimeout(() => reject(new Error('python listener not up in 10s')), 10_000).unref();
  });
  // Fill the accept queue (backlog 0 admits one connection): later SYNs are dropped, connects hang.
  const s = net.connect(p, '127.0.0.1');
  fillers.push(s);
  s.on('error', () => {});
  await new Promise<void>((r, j) => {
    s.once('connect', r);
    s.once('error', j);
  });
  return p;
}

beforeAll(async () => {
  up = await startUpstream(okHandler('up'));
  hang = await startUpstream(() => {});
  stall = await startUpstream((req, res) => {
    if (req.url!.includes('chunked')) res.writeHead(200, { 'content-type': 'text/plain' });
    else res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1000 });
    res.write('x'.repeat(100)); // then nothing: the body never completes
  });
  steady = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    let n = 0;
    const t = setInterval(() => {
      n++;
      if (n < 6) res.write(`chunk${n};`);
      else {
        clearInterval(t);
        res.end('done');
      }
    }, 150);
    res.once('close', () => clearInterval(t));
  });
  wa = await startUpstream(okHandler('a'));
  wb = await startUpstream(okHandler('b'));
  wz = await startUpstream(okHandler('z'));
  mirrorHang = await startUpstream(() => {});
  resetter = await startUpstream((req) => req.socket.destroy());
  backup = await startUpstream(okHandler('backup'));
  refused = await closedPort();
  if (hasPython) blackholePort = await startBlackhole();

  gw = await startInProcess(
    baseConfig({
      gateway: {
        name: 'timeouts',
        workers: 1,
        accessLog: { enabled: false },
        limits: { headersTimeout: `${HEADERS_TIMEOUT_MS}ms`, keepAliveTimeout: `${KEEPALIVE_TIMEOUT_MS}ms` },
      },
      routes: [
        { name: 'plain', match: { path: { prefix: '/plain' } }, cluster: 'up' },
        { name: 'hang', match: { path: { prefix: '/hang' } }, cluster: 'hang', timeout: '300ms' },
        {
          name: 'stall',
          match: { path: { prefix: '/stall' } },
          cluster: 'stall',
          timeout: '5s',
          idleTimeout: `${IDLE_TIMEOUT_MS}ms`,
        },
        {
          name: 'steady',
          match: { path: { prefix: '/steady' } },
          cluster: 'steady',
          timeout: '5s',
          idleTimeout: `${IDLE_TIMEOUT_MS}ms`,
        },
        {
          name: 'split',
          match: { path: { prefix: '/split' } },
          weightedClusters: [
            { cluster: 'wa', weight: 3 },
            { cluster: 'wb', weight: 1 },
            { cluster: 'wz', weight: 0 },
          ],
        },
        // The mirror's copies inherit the route timeout: 20s, longer than this whole file.
        {
          name: 'mirror-hang',
          match: { path: { prefix: '/mirror-hang' } },
          cluster: 'up',
          timeout: '20s',
          mirror: { cluster: 'mirror-hang' },
        },
        {
          name: 'mirror-refused',
          match: { path: { prefix: '/mirror-refused' } },
          cluster: 'up',
          mirror: { cluster: 'refused' },
        },
        {
          name: 'retry-reset',
          match: { path: { prefix: '/retry-reset' } },
          cluster: 'reset-then-backup',
          timeout: '5s',
          // Nothing kept for a retry (the default keeps bodies up to 64 KiB): a body that was read cannot go again.
          retry: { attempts: 2, on: ['5xx', 'reset'], maxBodyBytes: 0, backoff: { base: '5ms' } },
        },
        {
          name: 'retry-buffered',
          match: { path: { prefix: '/retry-buffered' } },
          cluster: 'reset-then-backup',
          timeout: '5s',
          retry: { attempts: 2, on: ['reset'], bufferBytes: 1024, backoff: { base: '5ms' } },
        },
        ...(hasPython
          ? [
              { name: 'blackhole', match: { path: { prefix: '/blackhole' } }, cluster: 'blackhole', timeout: '5s' },
              {
                name: 'blackhole-retry',
                match: { path: { prefix: '/bh-retry' } },
                cluster: 'blackhole-then-up',
                timeout: '5s',
                retry: { attempts: 1, on: ['connect-failure'], backoff: { base: '5ms' } },
              },
            ]
          : []),
      ],
      clusters: [
        { name: 'up', endpoints: [{ address: up.address }] },
        { name: 'hang', endpoints: [{ address: hang.address }] },
        { name: 'stall', endpoints: [{ address: stall.address }] },
        { name: 'steady', endpoints: [{ address: steady.address }] },
        { name: 'wa', endpoints: [{ address: wa.address }] },
        { name: 'wb', endpoints: [{ address: wb.address }] },
        { name: 'wz', endpoints: [{ address: wz.address }] },
        { name: 'mirror-hang', endpoints: [{ address: mirrorHang.address }] },
        { name: 'refused', endpoints: [{ address: `127.0.0.1:${refused}` }] },
        // Priorities make the first try deterministic: always the resetter, the retry the backup.
        {
          name: 'reset-then-backup',
          endpoints: [
            { address: resetter.address, priority: 0 },
            { address: backup.address, priority: 1 },
          ],
        },
        ...(hasPython
          ? [
              {
                name: 'blackhole',
                connectTimeout: `${CONNECT_TIMEOUT_MS}ms`,
                endpoints: [{ address: `127.0.0.1:${blackholePort}` }],
              },
              {
                name: 'blackhole-then-up',
                connectTimeout: `${CONNECT_TIMEOUT_MS}ms`,
                endpoints: [
                  { address: `127.0.0.1:${blackholePort}`, priority: 0 },
                  { address: up.address, priority: 1 },
                ],
              },
            ]
          : []),
      ],
    }),
  );
  port = Number(gw.url.split(':').at(-1));
});

afterAll(async () => {
  for (const s of rawSockets) s.destroy();
  for (const s of fillers) s.destroy();
  // Upstreams first: the gateway's pools would otherwise wait for the hanging mirror copies.
  await Promise.all([up, hang, stall, steady, wa, wb, wz, mirrorHang, resetter, backup].map((u) => u?.close()));
  await gw?.stop();
  if (blackhole && blackhole.exitCode === null) {
    blackhole.stdin?.end();
    blackhole.kill();
  }
  await agent.close();
});

/** A raw client socket, tracked so afterAll destroys it whatever happens. */
function rawConnect(): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  rawSockets.add(s);
  s.once('close', () => rawSockets.delete(s));
  s.on('error', () => {});
  return new Promise((r, j) => {
    s.once('connect', () => r(s));
    s.once('error', j);
  });
}

interface Observed {
  data: string;
  closedAfterMs: number | undefined;
}

/** Collect what a socket receives for at most `maxMs`, and when (after `t0`) it closed, if it did. */
function observe(s: net.Socket, t0: number, maxMs: number): Promise<Observed> {
  return new Promise((resolve) => {
    const out: Observed = { data: '', closedAfterMs: undefined };
    const done = () => {
      clearTimeout(timer);
      resolve(out);
    };
    const timer = setTimeout(done, maxMs);
    s.on('data', (d: Buffer) => {
      out.data += d.toString('latin1');
    });
    s.once('close', () => {
      out.closedAfterMs = performance.now() - t0;
      done();
    });
    if (s.destroyed) {
      out.closedAfterMs = 0;
      done();
    }
  });
}

const get = (path: string, opts: Parameters<typeof request>[1] = {}) =>
  request(`${gw.url}${path}`, { dispatcher: agent, ...opts });

describe('header read timeout (slowloris)', () => {
  it('never forwards a stalled partial request head, and keeps serving other connections', async () => {
    const before = up.requests.length;
    const slow = await rawConnect();
    slow.write('GET /plain/slowloris HTTP/1.1\r\nHo');
    // Wait until the gateway gives up on the stalled head (408 and close, after about headersTimeout):
    // from then on it can never be forwarded.
    slow.resume();
    await waitFor(() => slow.closed, HEADERS_TIMEOUT_MS + 2500, 10);
    const r = await get('/plain/normal');
    expect(r.statusCode).toBe(200);
    expect(await r.body.json()).toEqual({ upstream: 'up', path: '/plain/normal' });
    expect(up.requests.slice(before).map((q) => q.url)).toEqual(['/plain/normal']);
    slow.destroy();
  });

  it('closes a connection that sends nothing (or only a prefix of the h2c preface) after about headersTimeout', async () => {
    for (const bytes of ['', 'PRI * HT']) {
      const s = await rawConnect();
      const t0 = performance.now();
      if (bytes) s.write(bytes);
      const o = await observe(s, t0, HEADERS_TIMEOUT_MS + 2500);
      expect(o.closedAfterMs, `after ${JSON.stringify(bytes)}`).toBeDefined();
      expect(o.closedAfterMs!).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
      expect(o.closedAfterMs!).toBeLessThan(HEADERS_TIMEOUT_MS + 1500);
      expect(o.data).toBe(''); // the sniffer just closes, without a 408
    }
  });

  // Node checks header timeouts on a timer the listener starts (src/listener/servers.ts, enforceH1Timeouts).
  it('answers a stalled request head with 408 request_timeout and closes it within about headersTimeout', async () => {
    const before = up.requests.length;
    const s = await rawConnect();
    const t0 = performance.now();
    s.write('GET /plain/slowloris HTTP/1.1\r\nHo');
    await sleep(50); // deliberate pacing: the head arrives in two pieces
    s.write('st'); // a few more bytes, then nothing
    const o = await observe(s, t0, HEADERS_TIMEOUT_MS + 2500);
    s.destroy();
    expect(up.requests.length).toBe(before);
    expect(o.data).toMatch(/^HTTP\/1\.1 408 /);
    expect(o.data.toLowerCase()).toContain('x-meridian-error: request_timeout');
    expect(o.closedAfterMs).toBeDefined();
    expect(o.closedAfterMs!).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
    expect(o.closedAfterMs!).toBeLessThan(HEADERS_TIMEOUT_MS + 1500);
  });
});

describe('keep-alive timeout', () => {
  it('keeps an idle connection open for a follow-up request, then closes it after keepAliveTimeout', async () => {
    const s = await rawConnect();
    const readResponse = () =>
      new Promise<string>((resolve, reject) => {
        let buf = '';
        const timer = setTimeout(() => reject(new Error(`no complete response in 3s: ${JSON.stringify(buf)}`)), 3000);
        const onData = (d: Buffer) => {
          buf += d.toString('latin1');
          const head = buf.indexOf('\r\n\r\n');
          const len = /content-length: (\d+)/i.exec(buf)?.[1];
          if (head !== -1 && len !== undefined && buf.length >= head + 4 + Number(len)) {
            clearTimeout(timer);
            s.off('data', onData);
            resolve(buf);
          }
        };
        s.on('data', onData);
      });
    s.write('GET /plain/ka1 HTTP/1.1\r\nHost: h\r\n\r\n');
    expect(await readResponse()).toMatch(/^HTTP\/1\.1 200 /);
    await sleep(KEEPALIVE_TIMEOUT_MS / 2); // idle, but under the timeout: still usable
    s.write('GET /plain/ka2 HTTP/1.1\r\nHost: h\r\n\r\n');
    expect(await readResponse()).toMatch(/^HTTP\/1\.1 200 /);
    const t0 = performance.now();
    const o = await observe(s, t0, KEEPALIVE_TIMEOUT_MS + NODE_KEEPALIVE_BUFFER_MS + 2500);
    expect(o.closedAfterMs, 'the gateway closes the idle connection').toBeDefined();
    expect(o.closedAfterMs!).toBeGreaterThanOrEqual(KEEPALIVE_TIMEOUT_MS - 50);
    expect(o.closedAfterMs!).toBeLessThan(KEEPALIVE_TIMEOUT_MS + NODE_KEEPALIVE_BUFFER_MS + 1000);
    expect(o.data).toBe('');
  });
});

describe('route timeout and idleTimeout', () => {
  it('cuts a response whose upstream stalls mid-body after about idleTimeout (never a complete body)', async () => {
    for (const path of ['/stall/length', '/stall/chunked']) {
      const r = await get(path);
      const t0 = performance.now();
      expect(r.statusCode).toBe(200);
      let received = 0;
      let error: unknown;
      try {
        for await (const c of r.body) received += (c as Buffer).length;
      } catch (e) {
        error = e;
      }
      const elapsed = performance.now() - t0;
      expect(error, `${path}: the body must fail, not end`).toBeDefined();
      expect(received).toBe(100);
      expect(elapsed).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 100);
      expect(elapsed).toBeLessThan(IDLE_TIMEOUT_MS + 2000);
    }
  });

  it('idleTimeout bounds gaps, not the whole body: a slow but steady body completes', async () => {
    const t0 = performance.now();
    const r = await get('/steady');
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('chunk1;chunk2;chunk3;chunk4;chunk5;done');
    expect(performance.now() - t0).toBeGreaterThan(IDLE_TIMEOUT_MS + 300);
  });

  it('answers 504 upstream_timeout when the upstream never answers within the route timeout', async () => {
    const t0 = performance.now();
    const r = await get('/hang');
    expect(r.statusCode).toBe(504);
    expect(r.headers['x-meridian-error']).toBe('upstream_timeout');
    await r.body.dump();
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(3000);
  });
});

describe('weightedClusters', () => {
  it('splits 3:1 across two clusters and never picks a weight-0 cluster', async () => {
    const N = 800;
    const counts: Record<string, number> = {};
    let next = 0;
    const worker = async () => {
      while (next < N) {
        next++;
        const r = await get('/split');
        expect(r.statusCode).toBe(200);
        const name = String(r.headers['x-upstream']);
        counts[name] = (counts[name] ?? 0) + 1;
        await r.body.dump();
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    expect((counts.a ?? 0) + (counts.b ?? 0)).toBe(N);
    expect(counts.z).toBeUndefined();
    expect(wz.requests.length).toBe(0);
    // Expected 0.75; sd over 800 draws is 0.015, so ±0.06 is four sd.
    expect(Math.abs(counts.a / N - 0.75)).toBeLessThan(0.06);
  });
});

describe('mirroring never delays or fails the primary', () => {
  it('to a mirror that never answers: primary stays 200 and fast, and the mirror receives every copy', async () => {
    const before = mirrorHang.requests.length;
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const r = await get(`/mirror-hang/${i}`);
      expect(r.statusCode).toBe(200);
      expect(await r.body.json()).toEqual({ upstream: 'up', path: `/mirror-hang/${i}` });
      times.push(performance.now() - t0);
    }
    // Bodies are teed: the primary gets the whole body at its own pace, the hanging mirror a copy.
    const body = 'm'.repeat(3000);
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const r = await get('/mirror-hang/post', {
        method: 'POST',
        body: (async function* () {
          yield body.slice(0, 1000);
          await sleep(10); // deliberate pacing: the body streams in two chunks
          yield body.slice(1000);
        })(),
      });
      expect(r.statusCode).toBe(200);
      await r.body.dump();
      expect(up.requests.at(-1)!.bodyBytes).toBe(3000);
      times.push(performance.now() - t0);
    }
    expect(Math.max(...times)).toBeLessThan(1000);
    await waitFor(() => mirrorHang.requests.length >= before + 23, 5000, 10);
    const copies = mirrorHang.requests.slice(before);
    expect(copies.length).toBe(23);
    expect(copies.slice(0, 20).map((q) => q.url)).toEqual(Array.from({ length: 20 }, (_, i) => `/mirror-hang/${i}`));
    for (const q of copies) expect(q.headers.host).toMatch(/-shadow$/);
    await waitFor(() => copies.slice(20).every((q) => q.bodyBytes === 3000), 3000, 10);
  });

  it('to a mirror whose port refuses connections: primary stays 200 and fast', async () => {
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const r = await get(`/mirror-refused/${i}`);
      expect(r.statusCode).toBe(200);
      expect(r.headers['x-meridian-error']).toBeUndefined();
      expect(await r.body.json()).toEqual({ upstream: 'up', path: `/mirror-refused/${i}` });
      times.push(performance.now() - t0);
    }
    expect(Math.max(...times)).toBeLessThan(1000);
  });
});

/** A streamed (chunked) request body: each chunk, then a pause. */
async function* trickle(chunks: string[], gapMs: number) {
  for (const c of chunks) {
    yield c;
    await sleep(gapMs); // deliberate pacing of the streamed body
  }
}

describe('retries and request bodies', () => {
  it('with retry.maxBodyBytes: 0, does not resend a streamed body: an upstream reset after reading it gives 502, the other endpoint never sees it', async () => {
    const [r0, b0] = [resetter.requests.length, backup.requests.length];
    const chunks = ['alpha-', 'beta-', 'gamma-', 'delta'];
    const r = await get('/retry-reset/upload', {
      method: 'POST',
      body: (async function* () {
        for (const c of chunks) {
          yield c;
          await sleep(30); // deliberate pacing: the body streams chunk by chunk
        }
      })(),
    });
    expect(r.statusCode).toBe(502);
    expect(r.headers['x-meridian-error']).toBe('upstream_reset');
    await r.body.dump();
    expect(resetter.requests.length).toBe(r0 + 1);
    expect(resetter.requests.at(-1)!.bodyBytes).toBe(chunks.join('').length);
    await sleep(100); // a (wrong) retry would have been sent within the 5ms backoff
    expect(backup.requests.length).toBe(b0);
  });

  it('with retry.bufferBytes, a streamed body within it is kept and sent whole to the retry', async () => {
    const [r0, b0] = [resetter.requests.length, backup.requests.length];
    const chunks = ['alpha-', 'beta-', 'gamma-', 'delta'];
    const r = await get('/retry-buffered/upload', { method: 'POST', body: trickle(chunks, 30) });
    expect(r.statusCode).toBe(200);
    expect(((await r.body.json()) as { upstream: string }).upstream).toBe('backup');
    expect(resetter.requests.length).toBe(r0 + 1);
    expect(resetter.requests.at(-1)!.bodyBytes).toBe(chunks.join('').length);
    expect(backup.requests.length).toBe(b0 + 1);
    expect(backup.requests.at(-1)!.bodyBytes).toBe(chunks.join('').length);
  });

  it('with retry.bufferBytes, a body that outgrows it is not re-sent', async () => {
    const [r0, b0] = [resetter.requests.length, backup.requests.length];
    const r = await get('/retry-buffered/big', { method: 'POST', body: trickle(Array(4).fill('x'.repeat(400)), 10) });
    expect(r.statusCode).toBe(502);
    await r.body.dump();
    expect(resetter.requests.length).toBe(r0 + 1);
    await sleep(100); // the point: no (wrong) retry reaches the backup within this window
    expect(backup.requests.length).toBe(b0);
  });

  it('retries a body-less GET reset by the first endpoint on the second one', async () => {
    const [r0, b0] = [resetter.requests.length, backup.requests.length];
    const r = await get('/retry-reset/get');
    expect(r.statusCode).toBe(200);
    expect(await r.body.json()).toEqual({ upstream: 'backup', path: '/retry-reset/get' });
    expect(resetter.requests.length).toBe(r0 + 1);
    expect(backup.requests.length).toBe(b0 + 1);
  });
});

describe.skipIf(!hasPython)('cluster connectTimeout (connect hangs on a full accept queue)', () => {
  it('answers 502 upstream_connect_failure after about connectTimeout', async () => {
    const t0 = performance.now();
    const r = await get('/blackhole');
    const elapsed = performance.now() - t0;
    expect(r.statusCode).toBe(502);
    expect(r.headers['x-meridian-error']).toBe('upstream_connect_failure');
    await r.body.dump();
    expect(elapsed).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 50);
    expect(elapsed).toBeLessThan(CONNECT_TIMEOUT_MS + 2000);
  });

  it('retries a connect timeout on the next endpoint', async () => {
    const t0 = performance.now();
    const r = await get('/bh-retry/x');
    expect(r.statusCode).toBe(200);
    expect(await r.body.json()).toEqual({ upstream: 'up', path: '/bh-retry/x' });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 50);
  });
});
