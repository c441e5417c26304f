import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import http2 from 'node:http2';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { startInProcess, baseConfig, tempDir, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, okHandler, closedPort, type TestUpstream } from '../helpers/upstream.js';
import { startHub, type RunningHub } from '../../src/hub/control-plane.js';

/**
 * The secure edge defaults, with exact bytes on raw sockets: what the client gets back, and that the
 * upstream received nothing. `fast` overrides only the two body-timing limits (to keep the test
 * short); every other limit is the shipped default.
 */
let gw: InProcessGateway;
let up: TestUpstream;
let port = 0;

beforeAll(async () => {
  up = await startUpstream(okHandler('up'));
  gw = await startInProcess(
    baseConfig({
      gateway: {
        name: 'edge',
        workers: 1,
        accessLog: { enabled: false },
        limits: { bodyTimeout: '1s', bodyMinRate: 500 },
      },
      admin: { address: '127.0.0.1:0', token: 'admin-secret-token' },
      routes: [
        { name: 'trace-ok', match: { path: { prefix: '/trace-allowed' }, methods: ['TRACE', 'GET'] }, cluster: 'up' },
        { name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' },
      ],
      clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
    }),
  );
  port = Number(gw.url.split(':').at(-1));
});

afterAll(async () => {
  await gw?.stop();
  await up?.close();
});

/** Send bytes (optionally in timed pieces), collect everything until the gateway closes; bounded. */
function raw(pieces: Array<string | Buffer | number>, maxMs = 8000): Promise<{ text: string; closedAfterMs: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect(port, '127.0.0.1');
    let text = '';
    let stop = false;
    const done = () => {
      stop = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closedAfterMs: performance.now() - t0 });
    };
    const timer = setTimeout(done, maxMs);
    s.on('data', (d) => (text += d.toString('latin1')));
    s.on('close', done);
    s.on('error', () => undefined);
    void (async () => {
      for (const p of pieces) {
        if (stop) return;
        // A number is a deliberate pause: the pacing of a slow client.
        if (typeof p === 'number') await new Promise((r) => setTimeout(r, p));
        else s.write(p);
      }
    })();
  });
}

const seen = (path: string) => up.requests.filter((r) => r.url?.startsWith(path)).length;
const statusOf = (text: string) => Number(text.slice(9, 12));

describe('Host and :authority must be a valid host[:port]', () => {
  it.each([
    'evil.invalid/../x y',
    'a b',
    'host:0',
    'host:65536',
    'host:',
    'user@host',
    '[::1',
    '[zz::1]:80',
    'h/x',
    'h?x',
    'h#x',
    'h:80:80',
    'h\\x',
  ])('Host: %s -> 400, not forwarded', async (host) => {
    const path = `/bad-host-${encodeURIComponent(host).replace(/%/g, '_')}`;
    const { text } = await raw([`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`]);
    expect(statusOf(text)).toBe(400);
    expect(text).toContain('x-meridian-error: bad_request');
    expect(seen(path)).toBe(0);
  });

  it.each([
    'example.com',
    'a-b.example:443',
    '127.0.0.1:8080',
    '[::1]:8080',
    '[2001:db8::1]',
    "x!$&'()*+,;=.example",
    'pct%41.example',
  ])('Host: %s is accepted', async (host) => {
    const { text } = await raw([`GET /good-host HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`]);
    expect(statusOf(text)).toBe(200);
  });

  it.each(['user@h', 'h:0', 'h:99999', 'h!x:80:80'])(
    'HTTP/2 :authority %s -> 400, not forwarded',
    async (authority) => {
      const session = http2.connect(gw.url);
      try {
        const stream = session.request({ ':path': '/bad-authority', ':authority': authority });
        const headers = await new Promise<http2.IncomingHttpHeaders>((r) => stream.once('response', r));
        stream.resume();
        expect(headers[':status']).toBe(400);
        expect(headers['x-meridian-error']).toBe('bad_request');
      } finally {
        session.close();
      }
      expect(seen('/bad-authority')).toBe(0);
    },
  );

  it('an HTTP/2 :authority with a path or a space is reset by nghttp2 itself, never forwarded', async () => {
    const session = http2.connect(gw.url);
    try {
      const stream = session.request({ ':path': '/reset-authority', ':authority': 'evil.invalid/../x' });
      const outcome = await new Promise<string>((r) => {
        stream.once('response', () => r('response'));
        stream.once('error', () => r('reset'));
      });
      expect(outcome).toBe('reset');
    } finally {
      session.close();
    }
    expect(seen('/reset-authority')).toBe(0);
  });
});

describe('TRACE', () => {
  it('is refused with 405 by default and not forwarded', async () => {
    const { text } = await raw(['TRACE /traced HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n']);
    expect(statusOf(text)).toBe(405);
    expect(text).toContain('x-meridian-error: method_not_allowed');
    expect(seen('/traced')).toBe(0);
  });

  it('reaches a route whose methods name it', async () => {
    const { text } = await raw(['TRACE /trace-allowed HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n']);
    expect(statusOf(text)).toBe(200);
    expect(seen('/trace-allowed')).toBe(1);
  });
});

describe('request bodies', () => {
  it('Content-Length over the default maxBodyBytes (10 MiB) -> 413 before any byte is read, not forwarded', async () => {
    const { text } = await raw([
      `POST /huge HTTP/1.1\r\nHost: h\r\nContent-Length: ${2 * 1024 ** 3}\r\n\r\n`,
      'only a little',
    ]);
    expect(statusOf(text)).toBe(413);
    expect(text).toContain('x-meridian-error: payload_too_large');
    expect(text.toLowerCase()).toContain('connection: close');
    expect(seen('/huge')).toBe(0);
  });

  it('a chunked body outgrowing the default maxBodyBytes -> 413 and the connection closed', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    const pieces: Array<string | Buffer | number> = [
      'POST /huge-chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n',
    ];
    for (let i = 0; i < 12; i++) pieces.push(`${chunk.length.toString(16)}\r\n`, chunk, '\r\n', 5);
    pieces.push('0\r\n\r\n');
    const { text } = await raw(pieces);
    expect(statusOf(text)).toBe(413);
    expect(text).toContain('x-meridian-error: payload_too_large');
    // The upstream may have begun receiving it; it never got more than the limit.
    const got = up.requests.filter((r) => r.url === '/huge-chunked');
    expect(got.every((r) => r.bodyBytes <= 10 * 1024 * 1024)).toBe(true);
  });

  it('a stalled body ends with 408 and the connection closed after bodyTimeout', async () => {
    const { text, closedAfterMs } = await raw([
      'POST /stalled HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n',
      'x'.repeat(10),
    ]);
    expect(statusOf(text)).toBe(408);
    expect(text).toContain('x-meridian-error: request_timeout');
    expect(closedAfterMs).toBeGreaterThan(900);
    expect(closedAfterMs).toBeLessThan(3000);
  });

  it('a body trickled a byte at a time (under bodyMinRate) is cut off too', async () => {
    const pieces: Array<string | number> = ['POST /trickled HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n'];
    for (let i = 0; i < 60; i++) pieces.push('x', 100);
    const { text, closedAfterMs } = await raw(pieces);
    expect(statusOf(text)).toBe(408);
    expect(closedAfterMs).toBeLessThan(3000);
  });

  it('a steady body above bodyMinRate outlives bodyTimeout', async () => {
    const pieces: Array<string | number> = [
      'POST /steady HTTP/1.1\r\nHost: h\r\nContent-Length: 40000\r\nConnection: close\r\n\r\n',
    ];
    for (let i = 0; i < 20; i++) pieces.push('y'.repeat(2000), 100);
    const { text, closedAfterMs } = await raw(pieces);
    expect(statusOf(text)).toBe(200);
    expect(closedAfterMs).toBeGreaterThan(1500);
  });
});

describe('admin API with authentication on', () => {
  it.each(['/does-not-exist', '/config', '/%zz', '/live/extra', '/ready/x', '/clusters/none/status'])(
    'unauthenticated %s -> 401',
    async (path) => {
      const r = await request(`${gw.admin}${path}`);
      expect(r.statusCode).toBe(401);
      expect(r.headers['www-authenticate']).toContain('Bearer');
      await r.body.dump();
    },
  );

  it('probes answer without credentials on their exact paths', async () => {
    for (const path of ['/live', '/ready', '/ready?verbose=1']) {
      const r = await request(`${gw.admin}${path}`);
      expect(r.statusCode).toBe(200);
      await r.body.dump();
    }
  });

  it('authenticated, a malformed path escape is a 400 and an unknown path a 404', async () => {
    const auth = { authorization: 'Bearer admin-secret-token' };
    const bad = await request(`${gw.admin}/%zz`, { headers: auth });
    expect(bad.statusCode).toBe(400);
    await bad.body.dump();
    const missing = await request(`${gw.admin}/does-not-exist`, { headers: auth });
    expect(missing.statusCode).toBe(404);
    await missing.body.dump();
  });
});

describe('the hub API', () => {
  let hub: RunningHub;
  beforeAll(async () => {
    const dir = tempDir('meridian-hub-edge-');
    writeFileSync(
      join(dir, 'hub.yaml'),
      stringify({
        hub: { address: `127.0.0.1:${await closedPort()}`, tokens: [{ name: 'ops', token: 'hub-secret-token' }] },
      }),
    );
    hub = await startHub({ configFile: join(dir, 'hub.yaml'), stateDir: join(dir, 'state') });
  });
  afterAll(async () => hub?.stop());

  it.each(['/nope', '/%zz', '/live/x', '/v1/gateways'])('unauthenticated %s -> 401', async (path) => {
    const r = await request(`http://${hub.address}${path}`);
    expect(r.statusCode).toBe(401);
    await r.body.dump();
  });

  it('refuses a non-loopback address without authentication unless hub.insecure', async () => {
    const dir = tempDir('meridian-hub-open-');
    writeFileSync(join(dir, 'hub.yaml'), stringify({ hub: { address: '0.0.0.0:0' } }));
    await expect(startHub({ configFile: join(dir, 'hub.yaml'), stateDir: join(dir, 'state') })).rejects.toThrow(
      /hub\.insecure/,
    );
    const dir2 = tempDir('meridian-hub-open-');
    writeFileSync(join(dir2, 'hub.yaml'), stringify({ hub: { address: '0.0.0.0:0', insecure: true } }));
    const open = await startHub({ configFile: join(dir2, 'hub.yaml'), stateDir: join(dir2, 'state') });
    await open.stop();
  });
});
