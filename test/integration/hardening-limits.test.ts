import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import http2 from 'node:http2';
import { request } from 'undici';
import {
  startInProcess,
  spawnGateway,
  baseConfig,
  waitFor,
  type InProcessGateway,
  type SpawnedGateway,
} from '../helpers/gateway.js';
import { startUpstream, okHandler, type TestUpstream } from '../helpers/upstream.js';
import { TestCa, type Issued } from '../helpers/pki.js';

/**
 * Connection caps, TLS policy, h2c upgrades, HTTP/2 rapid reset, in-flight caps and heap shedding,
 * against real servers on port 0. Every loop is bounded in count and time; everything started is closed.
 */

const portOf = (addr: string) => Number(addr.split(':').at(-1));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let ca: TestCa;
let serverCert: Issued;
let up: TestUpstream;
/** Raw upstream for the h2c cases: records every connection and byte, and agrees to any h2c upgrade. */
let rawUp: net.Server;
const rawUpSeen: string[] = [];
/** A permissive TLS server (TLS 1.0+, every cipher, renegotiation allowed): proves each hostile client offer is valid. */
let control: tls.Server;
let gw: InProcessGateway;

beforeAll(async () => {
  ca = new TestCa('Meridian hardening CA');
  serverCert = ca.server();
  up = await startUpstream(okHandler('up'));
  rawUp = net.createServer((sock) => {
    sock.on('error', () => {});
    const i = rawUpSeen.push('') - 1;
    sock.on('data', (d: Buffer) => {
      const first = rawUpSeen[i] === '';
      rawUpSeen[i] += d.toString('latin1');
      if (!first) return;
      // An upstream that speaks h2c: the smuggling target the gateway must never hand a client to.
      if (/^upgrade:[^\r]*h2c/im.test(rawUpSeen[i]))
        sock.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n');
      else sock.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
  });
  await new Promise<void>((r) => rawUp.listen(0, '127.0.0.1', r));
  control = tls.createServer(
    { cert: serverCert.certPem, key: serverCert.keyPem, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' },
    (s) => {
      s.on('error', () => {});
      const ok = 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n';
      s.on('data', (d: Buffer) => (/connection: close/i.test(d.toString('latin1')) ? s.end(ok) : s.write(ok)));
    },
  );
  await new Promise<void>((r) => control.listen(0, '127.0.0.1', r));
  gw = await startInProcess(
    baseConfig({
      listeners: [
        { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
        { name: 'tls', address: '127.0.0.1:0', protocol: 'https', tls: { cert: serverCert.cert, key: serverCert.key } },
      ],
      routes: [
        { name: 'h2c', match: { path: { prefix: '/h2c' } }, cluster: 'raw' },
        { name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' },
      ],
      clusters: [
        { name: 'up', endpoints: [{ address: up.address }] },
        { name: 'raw', endpoints: [{ address: `127.0.0.1:${(rawUp.address() as net.AddressInfo).port}` }] },
      ],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  await up?.close();
  rawUp?.close();
  control?.close();
});

const upSaw = (prefix: string) => up.requests.filter((r) => r.url.startsWith(prefix)).length;

/** A keep-alive HTTP/1.1 connection that sends one request at a time and reads the whole response. */
class KeepAlive {
  #buf = '';
  closed = false;
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => (this.#buf += d.toString('latin1')));
    sock.on('error', () => {});
    sock.on('close', () => (this.closed = true));
  }

  static async open(port: number): Promise<KeepAlive> {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    return new KeepAlive(sock);
  }

  /** Status of GET `path`, or 0 when no complete response arrived within `timeoutMs`. */
  async get(path: string, timeoutMs = 3000): Promise<number> {
    this.#buf = '';
    this.sock.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    const end = Date.now() + timeoutMs;
    while (Date.now() < end && !this.closed) {
      const head = this.#buf.indexOf('\r\n\r\n');
      if (head !== -1) {
        const len = /\r\ncontent-length: *(\d+)/i.exec(this.#buf.slice(0, head));
        const complete = len ? this.#buf.length >= head + 4 + Number(len[1]) : this.#buf.endsWith('\r\n0\r\n\r\n');
        if (complete) return Number(this.#buf.slice(9, 12));
      }
      await sleep(10);
    }
    return 0;
  }

  destroy() {
    this.sock.destroy();
  }
}

/**
 * Connect, send `bytes`, collect the reply until the server closes (or `timeoutMs`). `closedByServer`
 * is true only when the server ended the connection (we never close first before the timeout).
 */
function rawExchange(
  port: number,
  bytes: string | Buffer,
  timeoutMs = 2000,
): Promise<{ reply: string; closedByServer: boolean; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(port, '127.0.0.1');
    let reply = '';
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ reply, closedByServer, ms: Date.now() - t0 });
    };
    s.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => finish(true));
    s.on('connect', () => s.write(bytes));
    const timer = setTimeout(() => finish(false), timeoutMs);
  });
}

describe('limits.maxConnections (per worker; workers: 1)', () => {
  const CAP = 3;
  let capGw: InProcessGateway;
  let mainPort: number;

  beforeAll(async () => {
    capGw = await startInProcess(
      baseConfig({
        gateway: { name: 'cap', workers: 1, accessLog: { enabled: false }, limits: { maxConnections: CAP } },
        listeners: [
          { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
          {
            name: 'tls',
            address: '127.0.0.1:0',
            protocol: 'https',
            tls: { cert: serverCert.cert, key: serverCert.key },
          },
        ],
        routes: [{ name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' }],
        clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
      }),
    );
    mainPort = portOf(capGw.url);
  });

  afterAll(async () => {
    await capGw?.stop();
  });

  // What the code does: net.Server#maxConnections. The TCP handshake completes (the kernel accepts),
  // then Node closes the socket at once, before reading a byte: no 503 (docs/config.md promises a 503
  // with x-meridian-overloaded for maxConnections too; see the report).
  it('closes the (N+1)th concurrent connection at once with no response, keeps the first N serving, accepts again once one closes', async () => {
    const conns: KeepAlive[] = [];
    try {
      for (let i = 0; i < CAP; i++) {
        const c = await KeepAlive.open(mainPort);
        conns.push(c);
        expect(await c.get(`/cap/keep-${i}`)).toBe(200);
      }
      const over = await rawExchange(mainPort, 'GET /cap/over HTTP/1.1\r\nHost: localhost\r\n\r\n');
      expect(over.closedByServer).toBe(true);
      expect(over.ms).toBeLessThan(1000);
      expect(over.reply).toBe('');
      expect(upSaw('/cap/over')).toBe(0);
      // The first N are untouched and still serve on their keep-alive connections.
      for (const [i, c] of conns.entries()) {
        expect(c.closed).toBe(false);
        expect(await c.get(`/cap/again-${i}`)).toBe(200);
      }
      // Free one slot: a new connection is served (bounded retry while the server sees the close).
      conns.shift()!.destroy();
      const reply = await waitFor(
        async () => {
          const r = await rawExchange(
            mainPort,
            'GET /cap/after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
          );
          return r.reply.startsWith('HTTP/1.1 200') ? r.reply : undefined;
        },
        3000,
        50,
      );
      expect(reply).toMatch(/^HTTP\/1.1 200/);
    } finally {
      for (const c of conns) c.destroy();
    }
  });

  // `maxConnections` is per worker: one count over all of the worker's listeners.
  it('caps the connections of the worker across its listeners (documented "per worker")', async () => {
    const conns: KeepAlive[] = [];
    try {
      for (let i = 0; i < CAP; i++) {
        const c = await KeepAlive.open(mainPort);
        conns.push(c);
        expect(await c.get(`/cap/pw-${i}`)).toBe(200);
      }
      const tlsOutcome = await new Promise<string>((resolve) => {
        const s = tls.connect({
          host: '127.0.0.1',
          port: portOf(capGw.gw.addresses.listeners.tls),
          ca: ca.certPem,
          servername: 'localhost',
          ALPNProtocols: ['http/1.1'],
        });
        const timer = setTimeout(() => {
          s.destroy();
          resolve('timeout');
        }, 3000);
        s.on('secureConnect', () => {
          clearTimeout(timer);
          s.destroy();
          resolve('accepted');
        });
        s.on('error', () => {
          clearTimeout(timer);
          resolve('refused');
        });
        s.on('close', () => {
          clearTimeout(timer);
          resolve('refused');
        });
      });
      expect(tlsOutcome).toBe('refused');
    } finally {
      for (const c of conns) c.destroy();
    }
  });
});

type TlsOutcome = { ok: true; protocol: string; cipher: string; reply: string } | { ok: false; code: string };

/** TLS handshake with `opts`; on success send one HTTP/1.1 request and collect the reply (bounded). */
function tlsExchange(port: number, opts: tls.ConnectionOptions, path = '/tls'): Promise<TlsOutcome> {
  return new Promise((resolve) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      ca: ca.certPem,
      servername: 'localhost',
      ALPNProtocols: ['http/1.1'],
      ...opts,
    });
    let out: TlsOutcome | undefined;
    let reply = '';
    const timer = setTimeout(() => s.destroy(), 3000);
    s.on('secureConnect', () => {
      out = { ok: true, protocol: s.getProtocol() ?? '', cipher: s.getCipher().name, reply: '' };
      s.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    });
    s.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    s.on('error', (e: NodeJS.ErrnoException) => {
      out ??= { ok: false, code: e.code ?? e.message };
    });
    s.on('close', () => {
      clearTimeout(timer);
      if (out?.ok) out.reply = reply;
      resolve(out ?? { ok: false, code: 'closed' });
    });
  });
}

describe('TLS hardening (https listener)', () => {
  const gwPort = () => portOf(gw.gw.addresses.listeners.tls);
  const ctlPort = () => (control.address() as net.AddressInfo).port;
  const CBC_ONLY =
    'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA:AES128-SHA256:AES128-SHA';

  it('refuses a TLS 1.2 client offering only CBC (non-AEAD) suites; a permissive server accepts the same offer', async () => {
    const offer: tls.ConnectionOptions = { maxVersion: 'TLSv1.2', ciphers: CBC_ONLY };
    const ctl = await tlsExchange(ctlPort(), offer);
    expect(ctl).toMatchObject({ ok: true, protocol: 'TLSv1.2' });
    expect((ctl as { cipher: string }).cipher).not.toMatch(/GCM|CHACHA/);
    const before = upSaw('/tls');
    expect(await tlsExchange(gwPort(), offer)).toEqual({ ok: false, code: 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE' });
    expect(upSaw('/tls')).toBe(before);
  });

  it('refuses a TLS 1.0/1.1-only client; a permissive server negotiates TLS 1.1 with it', async () => {
    // SECLEVEL=0: OpenSSL 3 clients otherwise refuse TLS 1.1 themselves, which would prove nothing.
    const offer: tls.ConnectionOptions = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' };
    expect(await tlsExchange(ctlPort(), offer)).toMatchObject({ ok: true, protocol: 'TLSv1.1' });
    expect(await tlsExchange(gwPort(), offer)).toEqual({ ok: false, code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
  });

  const accepted: Array<[string, tls.ConnectionOptions, string, RegExp]> = [
    [
      'TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256',
      { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' },
      'TLSv1.2',
      /^ECDHE-ECDSA-AES128-GCM-SHA256$/,
    ],
    [
      'TLS 1.2 ECDHE-ECDSA-AES256-GCM-SHA384',
      { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384' },
      'TLSv1.2',
      /^ECDHE-ECDSA-AES256-GCM-SHA384$/,
    ],
    [
      'TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305',
      { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305' },
      'TLSv1.2',
      /^ECDHE-ECDSA-CHACHA20-POLY1305$/,
    ],
    [
      'TLS 1.2 with a mixed offer (the server picks the AEAD suite)',
      { maxVersion: 'TLSv1.2', ciphers: `${CBC_ONLY}:ECDHE-ECDSA-AES128-GCM-SHA256` },
      'TLSv1.2',
      /GCM/,
    ],
    ['TLS 1.3', { minVersion: 'TLSv1.3' }, 'TLSv1.3', /^TLS_(AES_\d+_GCM|CHACHA20_POLY1305)_SHA\d+$/],
  ];
  for (const [what, offer, protocol, cipher] of accepted) {
    it(`accepts ${what} and serves over it`, async () => {
      const r = await tlsExchange(gwPort(), offer, '/tls/ok');
      expect(r).toMatchObject({ ok: true, protocol });
      const ok = r as Extract<TlsOutcome, { ok: true }>;
      expect(ok.cipher).toMatch(cipher);
      expect(ok.reply).toMatch(/^HTTP\/1.1 200/);
    });
  }

  /** Renegotiate on an established TLS 1.2 connection, then send a request to drive the handshake. */
  function renegotiate(
    port: number,
  ): Promise<{ renegotiated: boolean; error?: string; closed: boolean; reply: string }> {
    return new Promise((resolve) => {
      const st = { renegotiated: false, error: undefined as string | undefined, closed: false, reply: '' };
      let settled = false;
      const s = tls.connect(
        {
          host: '127.0.0.1',
          port,
          ca: ca.certPem,
          servername: 'localhost',
          ALPNProtocols: ['http/1.1'],
          maxVersion: 'TLSv1.2',
        },
        () => {
          const started = s.renegotiate({ rejectUnauthorized: true }, (err) => {
            if (err) st.error ??= (err as NodeJS.ErrnoException).code ?? err.message;
            else st.renegotiated = true;
          });
          if (!started) st.error ??= 'renegotiate() refused locally';
          s.write('GET /tls/reneg HTTP/1.1\r\nHost: localhost\r\n\r\n');
        },
      );
      const done = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        s.destroy();
        resolve(st);
      };
      s.on('data', (d: Buffer) => {
        st.reply += d.toString('latin1');
        if (st.renegotiated) done();
      });
      s.on('error', (e: NodeJS.ErrnoException) => {
        st.error ??= e.code ?? e.message;
      });
      s.on('close', () => {
        st.closed = true;
        done();
      });
      const timer = setTimeout(done, 3000);
    });
  }

  it('refuses client-initiated renegotiation on TLS 1.2 (the connection is torn down); a permissive server completes it', async () => {
    const ctl = await renegotiate(ctlPort());
    expect(ctl.renegotiated).toBe(true);
    expect(ctl.reply).toMatch(/^HTTP\/1.1 200/);
    const before = upSaw('/tls/reneg');
    const r = await renegotiate(gwPort());
    expect(r.renegotiated).toBe(false);
    expect(r.error).toBeDefined(); // EPROTO here: the server dropped the connection mid-handshake
    expect(r.closed).toBe(true);
    expect(r.reply).toBe('');
    expect(upSaw('/tls/reneg')).toBe(before);
    // The listener keeps serving new handshakes.
    expect(await tlsExchange(gwPort(), {}, '/tls/after-reneg')).toMatchObject({
      ok: true,
      reply: expect.stringMatching(/^HTTP\/1.1 200/),
    });
  });
});

describe('Upgrade: h2c on the plain listener', () => {
  const upgradeRequest = (upgradeLines: string) =>
    `GET /h2c/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n${upgradeLines}HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n` +
    // Pipelined behind it: must never be answered or forwarded once the upgrade is refused.
    'GET /h2c/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n' +
    'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';

  const expectRefused = async (upgradeLines: string) => {
    const rawBefore = rawUpSeen.length;
    const upBefore = up.requests.length;
    const r = await rawExchange(portOf(gw.url), upgradeRequest(upgradeLines));
    expect(r.reply).toMatch(/^HTTP\/1.1 400 /);
    expect(r.reply.toLowerCase()).toContain('x-meridian-error: bad_request');
    expect(r.reply.toLowerCase()).toContain('connection: close');
    expect(r.reply.match(/HTTP\/1.1 \d{3}/g)).toHaveLength(1);
    expect(r.closedByServer).toBe(true);
    expect(r.ms).toBeLessThan(1000);
    await sleep(50); // the point: no stray forward (of the upgrade or the pipelined request) within this window
    expect(rawUpSeen.length).toBe(rawBefore);
    expect(up.requests.length).toBe(upBefore);
  };

  for (const [what, lines] of [
    ['Upgrade: h2c', 'Upgrade: h2c\r\n'],
    ['Upgrade: H2C', 'Upgrade: H2C\r\n'],
  ]) {
    it(`answers ${what} with 400, closes the connection and forwards nothing (not even a pipelined request)`, async () => {
      await expectRefused(lines);
    });
  }

  // h2c smuggling: h2c offered in a list, or in a second Upgrade header, is refused like a lone one.
  for (const [what, lines] of [
    ['h2c first in a list', 'Upgrade: h2c, websocket\r\n'],
    ['h2c last in a list', 'Upgrade: websocket, h2c\r\n'],
    ['h2c in a second Upgrade header', 'Upgrade: websocket\r\nUpgrade: h2c\r\n'],
  ]) {
    it(`answers ${what} with 400 and forwards nothing`, async () => {
      await expectRefused(lines);
    });
  }
});

/** A raw HTTP/2 client: frame writer, frame reader, literal-only HPACK. */
function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** GET `path`: indexed :method GET and :scheme http, :path and :authority as literals without indexing. */
function getBlock(path: string): Buffer {
  const lit = (nameIndex: number, v: string) =>
    Buffer.concat([Buffer.from([nameIndex, v.length]), Buffer.from(v, 'latin1')]);
  return Buffer.concat([Buffer.from([0x82, 0x86]), lit(0x04, path), lit(0x01, 'localhost')]);
}

const FRAME = { HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7 } as const;
const END_STREAM_HEADERS = 0x5;
const CANCEL = Buffer.from([0, 0, 0, 8]);

function h2get(client: http2.ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = client.request({ ':path': path });
    const timer = setTimeout(() => {
      s.close();
      reject(new Error(`no response for ${path}`));
    }, 5000);
    s.on('response', (h) => {
      s.resume();
      s.on('end', () => {
        clearTimeout(timer);
        resolve(Number(h[':status']));
      });
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.end();
  });
}

describe('HTTP/2 rapid reset (CVE-2023-44487)', () => {
  it('sends GOAWAY to the flooding connection within bounded work while a concurrent normal client keeps getting 200s', async () => {
    const MAX_PAIRS = 4000;
    const BATCH = 100;
    const sock = net.connect(portOf(gw.url), '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const frames: Array<{ type: number; stream: number; payload: Buffer }> = [];
    let pending = Buffer.alloc(0);
    let closed = false;
    sock.on('error', () => {});
    sock.on('close', () => (closed = true));
    sock.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 9) {
        const len = pending.readUIntBE(0, 3);
        if (pending.length < 9 + len) break;
        frames.push({
          type: pending[3],
          stream: pending.readUInt32BE(5) & 0x7fffffff,
          payload: pending.subarray(9, 9 + len),
        });
        pending = pending.subarray(9 + len);
      }
    });
    const goaway = () => frames.find((f) => f.type === FRAME.GOAWAY);

    const normal = http2.connect(gw.url);
    normal.on('error', () => {});
    const statuses: number[] = [];
    let attackOver = false;
    const normalLoop = (async () => {
      const end = Date.now() + 15_000;
      // Keep going during the whole attack, and at least 20 requests.
      while ((statuses.length < 20 || !attackOver) && statuses.length < 500 && Date.now() < end) {
        statuses.push(await h2get(normal, `/rr-normal/${statuses.length}`).catch(() => -1));
      }
    })();

    try {
      sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(FRAME.SETTINGS, 0, 0)]));
      const t0 = Date.now();
      let pairs = 0;
      while (pairs < MAX_PAIRS && !closed && !goaway() && Date.now() - t0 < 10_000) {
        const batch: Buffer[] = [];
        for (let i = 0; i < BATCH; i++, pairs++) {
          const id = 2 * pairs + 1;
          batch.push(
            frame(FRAME.HEADERS, END_STREAM_HEADERS, id, getBlock(`/rr-reset/${pairs}`)),
            frame(FRAME.RST_STREAM, 0, id, CANCEL),
          );
        }
        if (!sock.write(Buffer.concat(batch))) await new Promise((r) => sock.once('drain', r));
        await new Promise((r) => setImmediate(r));
      }
      await waitFor(() => goaway() || closed, 3000, 20).catch(() => undefined);
      const ga = goaway();
      expect(ga, `no GOAWAY after ${pairs} HEADERS+RST_STREAM pairs (closed: ${closed})`).toBeDefined();
      const lastStream = ga!.payload.readUInt32BE(0) & 0x7fffffff;
      const code = ga!.payload.readUInt32BE(4);
      // nghttp2's stream-reset rate limit (burst 1000) ends the session with INTERNAL_ERROR (2).
      expect([0x2, 0xb]).toContain(code);
      expect(lastStream).toBeLessThan(2 * pairs + 1);
      expect(pairs).toBeLessThan(3000);

      // After GOAWAY new streams on that connection are never forwarded, and the gateway closes the
      // connection itself (Envoy's premature-reset rule), freeing the slot.
      const next = 2 * pairs + 1;
      if (!closed)
        sock.write(
          Buffer.concat([
            frame(FRAME.HEADERS, END_STREAM_HEADERS, next, getBlock('/rr-after-goaway')),
            frame(FRAME.PING, 0, 0, Buffer.alloc(8)),
          ]),
        );
      await sleep(300); // the point: the stream sent after GOAWAY is not forwarded within this window
      expect(upSaw('/rr-after-goaway')).toBe(0);
      expect(await waitFor(() => closed, 2000, 20)).toBe(true);
      // Cancelled streams did not turn into upstream requests in any number.
      expect(upSaw('/rr-reset/')).toBeLessThan(pairs / 10);
    } finally {
      attackOver = true;
      sock.destroy();
      await normalLoop;
      normal.close();
    }
    expect(statuses.length).toBeGreaterThanOrEqual(20);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    // And new connections are served.
    const fresh = http2.connect(gw.url);
    fresh.on('error', () => {});
    try {
      expect(await h2get(fresh, '/rr-fresh')).toBe(200);
    } finally {
      fresh.close();
    }
  });
});

// HTTP/1.1 over the cap is covered by test/integration/resilience.test.ts ("answers a fast 503 over the
// in-flight cap"); this adds multiplexed HTTP/2 streams on one session.
describe('limits.maxInFlightRequests over HTTP/2 streams', () => {
  it('answers a stream over the cap with an immediate 503 x-meridian-overloaded, and the session keeps working', async () => {
    const slow = await startUpstream((_req, res) => {
      const t = setTimeout(() => res.end('slow'), 600);
      res.on('close', () => clearTimeout(t));
    });
    const g = await startInProcess(
      baseConfig({
        gateway: { name: 'inflight', workers: 1, accessLog: { enabled: false }, limits: { maxInFlightRequests: 2 } },
        routes: [{ name: 'slow', match: { path: { prefix: '/' } }, cluster: 'slow', timeout: '5s' }],
        clusters: [{ name: 'slow', endpoints: [{ address: slow.address }] }],
      }),
    );
    const client = http2.connect(g.url);
    client.on('error', () => {});
    try {
      const held = [h2get(client, '/held-1'), h2get(client, '/held-2')];
      await waitFor(() => slow.requests.length >= 2, 3000, 10);
      const t0 = Date.now();
      const over = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const s = client.request({ ':path': '/over' });
        s.on('response', (h) => {
          s.resume();
          s.on('end', () => resolve(h));
        });
        s.on('error', reject);
        s.end();
      });
      expect(Date.now() - t0).toBeLessThan(300);
      expect(over[':status']).toBe(503);
      expect(over['x-meridian-overloaded']).toBe('true');
      expect(over['x-meridian-error']).toBe('overloaded');
      expect(slow.requests.some((r) => r.url === '/over')).toBe(false);
      expect(await Promise.all(held)).toEqual([200, 200]);
      expect(await h2get(client, '/after')).toBe(200);
    } finally {
      client.close();
      await g.stop();
      await slow.close();
    }
  });
});

/**
 * watchHeap compares process.memoryUsage().heapUsed with heapShedPercent of v8's heap_size_limit once
 * a second. Filling a real heap is neither bounded nor deterministic, so the limit is made small
 * instead (--max-old-space-size=64 gives heap_size_limit ~117 MB) and the threshold set to 1 %
 * (~1.2 MB), which any live gateway heap exceeds: the real watchdog measures the real heap and sheds.
 * A twin gateway with the same heap and the default 95 % keeps serving.
 */
describe('heap shedding (heapShedPercent)', () => {
  it('sheds with a fast 503 x-meridian-overloaded, nothing forwarded, once heap use is over the threshold; 95 % on the same heap keeps serving', async () => {
    const spawnWith = (heapShedPercent: number) =>
      spawnGateway(
        baseConfig({
          gateway: {
            name: `heap-${heapShedPercent}`,
            workers: 1,
            accessLog: { enabled: false },
            limits: { heapShedPercent },
          },
          routes: [{ name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' }],
          clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
        }),
        { env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=64`.trim() } },
      );
    const started = await Promise.allSettled([spawnWith(1), spawnWith(95)]);
    const gws = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    try {
      expect(gws).toHaveLength(2);
      const [shed, normal] = gws as [SpawnedGateway, SpawnedGateway];
      const get = async (g: SpawnedGateway, path: string) => {
        const r = await request(`${g.url}${path}`, { headersTimeout: 3000, bodyTimeout: 3000 });
        await r.body.dump();
        return r;
      };
      // The first check runs 1 s after start: poll (bounded) until shedding starts.
      const first = (await waitFor(
        async () => {
          const r = await get(shed, '/heap-shed/poll');
          return r.statusCode === 503 ? r : undefined;
        },
        5000,
        100,
      )) as Awaited<ReturnType<typeof get>>;
      expect(first.headers['x-meridian-overloaded']).toBe('true');
      expect(first.headers['x-meridian-error']).toBe('overloaded');
      const before = upSaw('/heap-shed/');
      for (let i = 0; i < 5; i++) {
        const t0 = Date.now();
        const r = await get(shed, `/heap-shed/${i}`);
        expect(r.statusCode).toBe(503);
        expect(Date.now() - t0).toBeLessThan(500);
      }
      expect(upSaw('/heap-shed/')).toBe(before);
      const metrics = await (await request(`${shed.admin}/metrics`)).body.text();
      expect(metrics).toMatch(/^meridian_overload_shedding 1$/m);

      // Same heap limit, default threshold: past several checks, still serving.
      const t0 = Date.now();
      while (Date.now() - t0 < 2200) {
        expect((await get(normal, '/heap-normal')).statusCode).toBe(200);
        await sleep(200); // deliberate pacing: one request per 200 ms across several heap checks
      }
      expect(await (await request(`${normal.admin}/metrics`)).body.text()).toMatch(/^meridian_overload_shedding 0$/m);
    } finally {
      await Promise.all(gws.map((g) => g.stop()));
    }
  });
});

describe('HTTP/1 over TLS: refusals carry the error catalogue', () => {
  let tgw: InProcessGateway;
  beforeAll(async () => {
    tgw = await startInProcess(
      baseConfig({
        gateway: { name: 'tls408', workers: 1, accessLog: { enabled: false }, limits: { headersTimeout: '400ms' } },
        listeners: [
          {
            name: 'main',
            address: '127.0.0.1:0',
            protocol: 'https',
            tls: { cert: serverCert.cert, key: serverCert.key },
          },
        ],
        routes: [{ name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' }],
        clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
      }),
    );
  });
  afterAll(async () => tgw?.stop());

  /** Send `bytes` over TLS (ALPN http/1.1) and collect the reply until the server closes. */
  const exchange = (bytes: string) =>
    new Promise<{ reply: string; ms: number }>((resolve, reject) => {
      const t0 = Date.now();
      const s = tls.connect(
        {
          port: portOf(tgw.gw.addresses.listeners.main),
          host: '127.0.0.1',
          rejectUnauthorized: false,
          ALPNProtocols: ['http/1.1'],
        },
        () => s.write(bytes),
      );
      let reply = '';
      s.on('data', (d: Buffer) => (reply += d.toString('latin1')));
      s.on('error', () => {});
      s.on('close', () => resolve({ reply, ms: Date.now() - t0 }));
      setTimeout(() => {
        s.destroy();
        reject(new Error(`no close within 5 s; got ${JSON.stringify(reply)}`));
      }, 5000).unref();
    });

  it('answers a stalled request head with 408 request_timeout after about headersTimeout', async () => {
    const before = up.requests.length;
    const { reply, ms } = await exchange('GET /slow HTTP/1.1\r\nHo');
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(reply.toLowerCase()).toContain('x-meridian-error: request_timeout');
    expect(ms).toBeGreaterThanOrEqual(350);
    expect(ms).toBeLessThan(2000);
    expect(up.requests.length).toBe(before);
  });

  it('answers a malformed request with 400 bad_request and forwards nothing', async () => {
    const before = up.requests.length;
    const { reply } = await exchange('GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab');
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(reply.toLowerCase()).toContain('x-meridian-error: bad_request');
    expect(up.requests.length).toBe(before);
  });
});
