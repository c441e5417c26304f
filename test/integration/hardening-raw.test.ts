import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import { request } from 'undici';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, okHandler, type TestUpstream } from '../helpers/upstream.js';

let gw: InProcessGateway;
let up: TestUpstream;
let badUp: net.Server;
let badResponse = '';
let port = 0;

beforeAll(async () => {
  up = await startUpstream(okHandler('up'));
  badUp = net.createServer((s) => s.once('data', () => s.end(badResponse)));
  await new Promise<void>((r) => badUp.listen(0, '127.0.0.1', r));
  gw = await startInProcess(baseConfig({
    routes: [
      { name: 'bad', match: { path: { prefix: '/bad-upstream' } }, cluster: 'bad' },
      { name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' },
    ],
    clusters: [
      { name: 'up', endpoints: [{ address: up.address }] },
      { name: 'bad', endpoints: [{ address: `127.0.0.1:${(badUp.address() as net.AddressInfo).port}` }] },
    ],
  }));
  port = Number(gw.url.split(':').at(-1));
});

afterAll(async () => {
  await gw?.stop();
  await up?.close();
  badUp?.close();
});

/** Send raw bytes, collect the reply until the server closes or 1.5 s pass. */
function raw(bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => resolve(out));
    s.write(bytes);
    setTimeout(() => { s.destroy(); resolve(out); }, 1500);
  });
}

async function stillServes() {
  const r = await request(`${gw.url}/healthy`);
  expect(r.statusCode).toBe(200);
  await r.body.dump();
}

const H = 'Host: example.com\r\n';
const cases: Array<[string, string, RegExp]> = [
  ['Content-Length with Transfer-Encoding', `POST /x HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, /^HTTP\/1.1 400/],
  ['duplicate Content-Length', `POST /x HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello`, /^HTTP\/1.1 400/],
  ['an invalid Content-Length', `POST /x HTTP/1.1\r\n${H}Content-Length: 5x\r\n\r\nhello`, /^HTTP\/1.1 400/],
  ['a Transfer-Encoding other than a final chunked', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`, /^HTTP\/1.1 (400|501)/],
  ['an invalid chunk size', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`, /^HTTP\/1.1 400/],
  ['an oversized chunk extension', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;${'a'.repeat(20000)}\r\nhello\r\n0\r\n\r\n`, /^HTTP\/1.1 (400|413)/],
  ['an obs-fold header', `GET /x HTTP/1.1\r\n${H}X-Folded: a\r\n b\r\n\r\n`, /^HTTP\/1.1 400/],
  ['a bare CR in a header', `GET /x HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`, /^HTTP\/1.1 400/],
  ['a space before the colon', `GET /x HTTP/1.1\r\n${H}X-A : b\r\n\r\n`, /^HTTP\/1.1 400/],
  ['an invalid header name', `GET /x HTTP/1.1\r\n${H}X(A): b\r\n\r\n`, /^HTTP\/1.1 400/],
  ['a header name with an underscore', `GET /x HTTP/1.1\r\n${H}X_Forwarded_User: admin\r\n\r\n`, /^HTTP\/1.1 400/],
  ['an HTTP/0.9 request line', `GET /x\r\n${H}X-Injected: yes HTTP/1.1\r\n\r\n`, /^HTTP\/1.1 400/],
  ['two Host headers', `GET /x HTTP/1.1\r\n${H}Host: evil.com\r\n\r\n`, /^HTTP\/1.1 400/],
  ['a missing Host', 'GET /x HTTP/1.1\r\nX-A: b\r\n\r\n', /^HTTP\/1.1 400/],
  ['an absolute-form target (no open forward proxy)', `GET http://evil.com/x HTTP/1.1\r\n${H}\r\n`, /^HTTP\/1.1 400/],
  ['CONNECT', `CONNECT evil.com:443 HTTP/1.1\r\nHost: evil.com:443\r\n\r\n`, /^HTTP\/1.1 (400|405)/],
  ['Upgrade: h2c', `GET /x HTTP/1.1\r\n${H}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n`, /^HTTP\/1.1 400/],
  ['headers over 60 KiB', `GET /x HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(62 * 1024)}\r\n\r\n`, /^HTTP\/1.1 431/],
  ['more than 100 headers', `GET /x HTTP/1.1\r\n${H}${Array.from({ length: 101 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`, /^HTTP\/1.1 431/],
  ['a URI over 16 KiB', `GET /${'a'.repeat(17 * 1024)} HTTP/1.1\r\n${H}\r\n`, /^HTTP\/1.1 414/],
];

describe('hostile HTTP/1 input', () => {
  for (const [what, bytes, expected] of cases) {
    it(`refuses ${what}, forwards nothing and keeps serving`, async () => {
      const before = up.requests.length;
      const reply = await raw(bytes);
      expect(reply).toMatch(expected);
      // Give any stray forward a moment to arrive before asserting there was none.
      await new Promise((r) => setTimeout(r, 50));
      expect(up.requests.length).toBe(before);
      await stillServes();
    });
  }

  it('never forwards a client x-forwarded-client-cert header', async () => {
    const reply = await raw(`GET /x HTTP/1.1\r\n${H}X-Forwarded-Client-Cert: By=spiffe://evil\r\nX-Real-IP: 1.1.1.1\r\nConnection: close\r\n\r\n`);
    expect(reply).toMatch(/^HTTP\/1.1 200/);
    const h = up.requests.at(-1)!.headers;
    expect(h['x-forwarded-client-cert']).toBeUndefined();
    expect(h['x-real-ip']).toBeUndefined();
  });
});

describe('hostile upstream responses', () => {
  const responses: Array<[string, string]> = [
    ['a malformed status line', 'HTTP/1.1 2OO OK\r\ncontent-length: 0\r\n\r\n'],
    ['duplicate Content-Length', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok'],
    ['Content-Length with Transfer-Encoding', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'],
  ];
  for (const [what, bytes] of responses) {
    it(`turns ${what} into a 502`, async () => {
      badResponse = bytes;
      const r = await request(`${gw.url}/bad-upstream`);
      expect(r.statusCode).toBe(502);
      expect(r.headers['x-meridian-error']).toMatch(/upstream_(protocol_error|reset)/);
      await r.body.dump();
    });
  }
});
