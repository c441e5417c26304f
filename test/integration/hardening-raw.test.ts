import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import { request } from 'undici';
import { startInProcess, baseConfig, waitFor, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, okHandler, type TestUpstream } from '../helpers/upstream.js';

let gw: InProcessGateway;
let up: TestUpstream;
/** Upstream of the host-specific routes (absolute-form cases). */
let hosted: TestUpstream;
let badUp: net.Server;
let badResponse = '';
let port = 0;

beforeAll(async () => {
  up = await startUpstream(okHandler('up'));
  hosted = await startUpstream(okHandler('hosted'));
  badUp = net.createServer((s) => s.once('data', () => s.end(badResponse)));
  await new Promise<void>((r) => badUp.listen(0, '127.0.0.1', r));
  gw = await startInProcess(
    baseConfig({
      routes: [
        { name: 'bad', match: { path: { prefix: '/bad-upstream' } }, cluster: 'bad' },
        { name: 'api', match: { hosts: ['api.example.com'], path: { prefix: '/' } }, cluster: 'hosted' },
        { name: 'wild', match: { hosts: ['*.wild.test'], path: { prefix: '/' } }, cluster: 'hosted' },
        {
          name: 'api-admin',
          match: { hosts: ['api.example.com'], path: { prefix: '/admin' } },
          directResponse: { status: 403, body: 'no' },
        },
        { name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' },
      ],
      clusters: [
        { name: 'up', endpoints: [{ address: up.address }] },
        { name: 'hosted', endpoints: [{ address: hosted.address }] },
        { name: 'bad', endpoints: [{ address: `127.0.0.1:${(badUp.address() as net.AddressInfo).port}` }] },
      ],
    }),
  );
  port = Number(gw.url.split(':').at(-1));
});

afterAll(async () => {
  await gw?.stop();
  await up?.close();
  await hosted?.close();
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
    setTimeout(() => {
      s.destroy();
      resolve(out);
    }, 1500);
  });
}

async function stillServes() {
  const r = await request(`${gw.url}/healthy`);
  expect(r.statusCode).toBe(200);
  await r.body.dump();
}

const H = 'Host: example.com\r\n';
const cases: Array<[string, string, RegExp]> = [
  [
    'Content-Length with Transfer-Encoding',
    `POST /x HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    /^HTTP\/1.1 400/,
  ],
  [
    'duplicate Content-Length',
    `POST /x HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello`,
    /^HTTP\/1.1 400/,
  ],
  ['an invalid Content-Length', `POST /x HTTP/1.1\r\n${H}Content-Length: 5x\r\n\r\nhello`, /^HTTP\/1.1 400/],
  [
    'a Transfer-Encoding other than a final chunked',
    `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`,
    /^HTTP\/1.1 (400|501)/,
  ],
  [
    'an invalid chunk size',
    `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`,
    /^HTTP\/1.1 400/,
  ],
  [
    'an oversized chunk extension',
    `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;${'a'.repeat(20000)}\r\nhello\r\n0\r\n\r\n`,
    /^HTTP\/1.1 (400|413)/,
  ],
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
  [
    'Upgrade: h2c',
    `GET /x HTTP/1.1\r\n${H}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n`,
    /^HTTP\/1.1 400/,
  ],
  ['headers over 60 KiB', `GET /x HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(62 * 1024)}\r\n\r\n`, /^HTTP\/1.1 431/],
  [
    'more than 100 headers',
    `GET /x HTTP/1.1\r\n${H}${Array.from({ length: 101 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`,
    /^HTTP\/1.1 431/,
  ],
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

  it("never forwards client identity headers: XFCC and x-spiffe-id are dropped, x-real-ip is the gateway's", async () => {
    const reply = await raw(
      `GET /x HTTP/1.1\r\n${H}X-Forwarded-Client-Cert: By=spiffe://evil\r\nX-Spiffe-Id: spiffe://evil/x\r\nX-Real-IP: 1.1.1.1\r\nConnection: close\r\n\r\n`,
    );
    expect(reply).toMatch(/^HTTP\/1.1 200/);
    const h = up.requests.at(-1)!.headers;
    expect(h['x-forwarded-client-cert']).toBeUndefined();
    expect(h['x-spiffe-id']).toBeUndefined();
    expect(h['x-real-ip']).toBe('127.0.0.1');
  });
});

/**
 * Absolute-form targets (`GET http://host/path HTTP/1.1`, RFC 9112 3.2.2) are accepted only for an
 * authority the listener serves: a route host (exact or `*.suffix`; the catch-all route does not
 * count), or the request's own Host. The URI's authority then replaces Host and the upstream gets
 * origin-form. Anything else is a 400 with nothing forwarded: never a forward proxy.
 */
describe('absolute-form request targets', () => {
  const send = (line: string, headers = 'Host: other.test\r\n') =>
    raw(`${line}\r\n${headers}Connection: close\r\n\r\n`);
  const total = () => up.requests.length + hosted.requests.length;

  it('accepts a configured route host: the URI authority replaces Host, the upstream gets origin-form', async () => {
    const before = hosted.requests.length;
    expect(await send('GET http://api.example.com/v1/items?page=2 HTTP/1.1')).toMatch(/^HTTP\/1.1 200/);
    expect(hosted.requests.length).toBe(before + 1);
    const seen = hosted.requests.at(-1)!;
    expect(seen.url).toBe('/v1/items?page=2');
    expect(seen.headers.host).toBe('api.example.com');
    expect(seen.headers['x-forwarded-host']).toBe('api.example.com');
  });

  it('routes on the URI authority, not on Host', async () => {
    expect(await send('GET http://API.example.com/admin/x HTTP/1.1')).toMatch(/^HTTP\/1.1 403/);
  });

  it('accepts a wildcard route host with a port, and an empty path as "/"', async () => {
    const before = hosted.requests.length;
    expect(await send('GET http://a.wild.test:8080 HTTP/1.1', 'Host: a.wild.test:8080\r\n')).toMatch(/^HTTP\/1.1 200/);
    expect(hosted.requests.length).toBe(before + 1);
    expect(hosted.requests.at(-1)!.url).toBe('/');
    expect(hosted.requests.at(-1)!.headers.host).toBe('a.wild.test:8080');
  });

  it('normalizes the path of an absolute-form target like any other', async () => {
    const before = hosted.requests.length;
    expect(await send('GET http://api.example.com/a/../%62 HTTP/1.1')).toMatch(/^HTTP\/1.1 200/);
    expect(hosted.requests.length).toBe(before + 1);
    expect(hosted.requests.at(-1)!.url).toBe('/b');
  });

  it("accepts an authority equal to the request's own Host (the catch-all route serves it as origin-form)", async () => {
    const before = up.requests.length;
    expect(await send(`GET http://127.0.0.1:${port}/self HTTP/1.1`, `Host: 127.0.0.1:${port}\r\n`)).toMatch(
      /^HTTP\/1.1 200/,
    );
    expect(up.requests.length).toBe(before + 1);
    expect(up.requests.at(-1)!.url).toBe('/self');
  });

  const refused: Array<[string, string, string?]> = [
    ['an authority no route names (the catch-all route does not count)', 'GET http://evil.example/x HTTP/1.1'],
    ["a wildcard route's bare suffix", 'GET http://wild.test/x HTTP/1.1', 'Host: wild.test.evil\r\n'],
    ['userinfo in the authority', 'GET http://user@api.example.com/x HTTP/1.1'],
    ['a scheme other than http(s)', 'GET ftp://api.example.com/x HTTP/1.1'],
    ['an empty authority', 'GET http:///x HTTP/1.1'],
    ['a malformed port', 'GET http://api.example.com:8o/x HTTP/1.1'],
    ['an asterisk-form target on GET', 'GET * HTTP/1.1'],
    ['two Host headers', 'GET http://api.example.com/x HTTP/1.1', 'Host: api.example.com\r\nHost: other.test\r\n'],
  ];
  for (const [what, line, headers] of refused) {
    it(`refuses ${what} with 400 and forwards nothing`, async () => {
      const before = total();
      const reply = await send(line, headers);
      expect(reply).toMatch(/^HTTP\/1.1 400/);
      expect(reply.toLowerCase()).toContain('x-meridian-error: bad_request');
      // Fixed wait on purpose: give any stray forward a moment to arrive before asserting there was none.
      await new Promise((r) => setTimeout(r, 50));
      expect(total()).toBe(before);
      await stillServes();
    });
  }

  it('keeps refusing CONNECT to a configured host with 405', async () => {
    const before = total();
    expect(await send('CONNECT api.example.com:443 HTTP/1.1', 'Host: api.example.com:443\r\n')).toMatch(
      /^HTTP\/1.1 405/,
    );
    expect(total()).toBe(before);
  });
});

describe('hostile upstream responses', () => {
  const responses: Array<[string, string]> = [
    ['a malformed status line', 'HTTP/1.1 2OO OK\r\ncontent-length: 0\r\n\r\n'],
    ['duplicate Content-Length', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok'],
    [
      'Content-Length with Transfer-Encoding',
      'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    ],
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

  it('never serves bytes an upstream sends on an idle keep-alive connection as the next response', async () => {
    let connections = 0;
    let closed = 0;
    const chatty = net.createServer((sock) => {
      connections++;
      sock.on('close', () => closed++);
      sock.on('data', () => {
        sock.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood');
        // Unsolicited: a second "response" on the idle connection, before any further request.
        setTimeout(() => sock.destroyed || sock.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil'), 30);
      });
    });
    await new Promise<void>((r) => chatty.listen(0, '127.0.0.1', r));
    const g = await startInProcess(
      baseConfig({
        routes: [{ name: 'chatty', match: { path: { prefix: '/' } }, cluster: 'chatty' }],
        clusters: [
          { name: 'chatty', endpoints: [{ address: `127.0.0.1:${(chatty.address() as net.AddressInfo).port}` }] },
        ],
      }),
    );
    try {
      for (let i = 0; i < 4; i++) {
        expect(await (await request(`${g.url}/`)).body.text()).toBe('good');
        // The unsolicited bytes came and the gateway dropped the poisoned connection.
        await waitFor(() => closed === i + 1, 2000, 10);
      }
      // Each poisoned connection was dropped: every request needed a new one.
      expect(connections).toBe(4);
    } finally {
      await g.stop();
      chatty.close();
    }
  });
});
