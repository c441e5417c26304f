import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { TestCa } from '../helpers/pki.js';

/**
 * HTTP/2 CONTINUATION flood (the April 2024 class: CVE-2024-27983 in Node, CVE-2024-28182 in nghttp2):
 * a HEADERS frame without END_HEADERS followed by an endless run of CONTINUATION frames, which a
 * server must buffer (and HPACK-decode) before it has a request to judge. Node 20 ships nghttp2 >= 1.61,
 * which allows at most 8 CONTINUATION frames per header block and treats the 9th as a fatal session
 * error; Node then sends GOAWAY and closes the connection. Separately, the listener's
 * SETTINGS_MAX_HEADER_LIST_SIZE (gateway.limits.maxHeaderBytes) caps the decoded block: a bigger block
 * within 8 frames is answered 431 on its stream and the connection lives on.
 * Frames are written by hand on raw sockets (h2c prior knowledge and TLS with ALPN h2).
 */

let gw: InProcessGateway;
let up: TestUpstream;
let ca: TestCa;

const HEADERS_TIMEOUT_MS = 1000;
const IDLE_TIMEOUT_MS = 3000;

beforeAll(async () => {
  ca = new TestCa('H2 Test CA');
  const cert = ca.server();
  up = await startUpstream((_req, res) => res.end('ok'));
  gw = await startInProcess(
    baseConfig({
      gateway: {
        name: 'test',
        workers: 1,
        accessLog: { enabled: false },
        limits: { headersTimeout: `${HEADERS_TIMEOUT_MS}ms`, idleTimeout: `${IDLE_TIMEOUT_MS}ms` },
      },
      listeners: [
        { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
        { name: 'tls', address: '127.0.0.1:0', protocol: 'https', tls: { cert: cert.cert, key: cert.key } },
      ],
      routes: [{ name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' }],
      clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
    }),
  );
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await up?.close();
});

// ---- HTTP/2 framing and HPACK (just what the tests send and read) ----

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const T = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7, CONTINUATION: 9 } as const;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK integer with an N-bit prefix (RFC 7541 5.1). */
function hpackInt(n: number, prefixBits: number, high = 0): number[] {
  const max = (1 << prefixBits) - 1;
  if (n < max) return [high | n];
  const out = [high | max];
  for (n -= max; n >= 128; n >>= 7) out.push((n & 127) | 128);
  out.push(n);
  return out;
}

const hpackString = (s: string) => Buffer.concat([Buffer.from(hpackInt(Buffer.byteLength(s), 7)), Buffer.from(s)]);
/** Literal header field without indexing, new name (RFC 7541 6.2.2). */
const literal = (name: string, value: string) =>
  Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
/** Literal without indexing, name from the static table. */
const literalIndexedName = (index: number, value: string) =>
  Buffer.concat([Buffer.from(hpackInt(index, 4)), hpackString(value)]);

/** :method GET, :scheme, :path, :authority localhost. */
function requestBlock(path: string, scheme: 'http' | 'https'): Buffer {
  return Buffer.concat([
    Buffer.from([0x82, scheme === 'http' ? 0x86 : 0x87]),
    literalIndexedName(4, path),
    literalIndexedName(1, 'localhost'),
  ]);
}

/** A CONTINUATION payload of about `size` bytes: one literal header field. */
const filler = (i: number, size = 300) => literal(`x-flood-${i}`, 'a'.repeat(size));

// Huffman codes of the digits (RFC 7541 appendix B), enough to read a :status value.
const HUFFMAN_DIGITS: Record<string, string> = {
  '00000': '0',
  '00001': '1',
  '00010': '2',
  '011001': '3',
  '011010': '4',
  '011011': '5',
  '011100': '6',
  '011101': '7',
  '011110': '8',
  '011111': '9',
};
const STATIC_STATUS: Record<number, string> = {
  8: '200',
  9: '204',
  10: '206',
  11: '304',
  12: '400',
  13: '404',
  14: '500',
};

/** The :status of a response header block, when it is the first field (as Node writes it). */
function statusOf(block: Buffer): string | undefined {
  const b = block[0];
  if (b & 0x80) return STATIC_STATUS[b & 0x7f];
  const index = b & 0x40 ? b & 0x3f : b & 0x0f;
  if (!STATIC_STATUS[index]) return undefined;
  const len = block[1] & 0x7f;
  const raw = block.subarray(2, 2 + len);
  if (!(block[1] & 0x80)) return raw.toString('latin1');
  const bits = [...raw].map((x) => x.toString(2).padStart(8, '0')).join('');
  let out = '';
  let cur = '';
  for (const bit of bits) {
    cur += bit;
    if (HUFFMAN_DIGITS[cur]) {
      out += HUFFMAN_DIGITS[cur];
      cur = '';
    }
    if (out.length === 3) break;
  }
  return out;
}

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** A raw HTTP/2 client connection: writes bytes, parses the frames it gets back, knows when it closed. */
class RawH2 {
  readonly frames: Frame[] = [];
  closed = false;
  readonly closedPromise: Promise<void>;
  #buf = Buffer.alloc(0);

  private constructor(
    readonly socket: net.Socket,
    readonly scheme: 'http' | 'https',
  ) {
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => this.#onData(d));
    this.closedPromise = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        resolve();
      }),
    );
  }

  static async open(listener: 'main' | 'tls'): Promise<RawH2> {
    const [host, port] = gw.gw.addresses.listeners[listener].split(':');
    const socket =
      listener === 'main'
        ? net.connect(Number(port), host)
        : tls.connect({ host, port: Number(port), servername: 'localhost', ca: ca.certPem, ALPNProtocols: ['h2'] });
    await new Promise<void>((resolve, reject) => {
      socket.once(listener === 'main' ? 'connect' : 'secureConnect', () => resolve());
      socket.once('error', reject);
      setTimeout(() => reject(new Error('connect timed out')), 5000).unref();
    });
    if (listener === 'tls') expect((socket as tls.TLSSocket).alpnProtocol).toBe('h2');
    const conn = new RawH2(socket, listener === 'main' ? 'http' : 'https');
    conn.socket.write(Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0)]));
    return conn;
  }

  #onData(d: Buffer) {
    this.#buf = Buffer.concat([this.#buf, d]);
    while (this.#buf.length >= 9) {
      const len = this.#buf.readUIntBE(0, 3);
      if (this.#buf.length < 9 + len) break;
      this.frames.push({
        type: this.#buf[3],
        flags: this.#buf[4],
        streamId: this.#buf.readUInt32BE(5) & 0x7fffffff,
        payload: this.#buf.subarray(9, 9 + len),
      });
      this.#buf = this.#buf.subarray(9 + len);
    }
  }

  /** Write, waiting (bounded) for the socket to drain when it pushes back. */
  async write(b: Buffer): Promise<void> {
    if (this.closed || this.socket.destroyed) return;
    if (this.socket.write(b)) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 200);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  goaway(): { lastStreamId: number; errorCode: number } | undefined {
    const g = this.frames.find((f) => f.type === T.GOAWAY);
    return g && { lastStreamId: g.payload.readUInt32BE(0) & 0x7fffffff, errorCode: g.payload.readUInt32BE(4) };
  }

  async waitFor(pred: () => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    return pred();
  }

  async waitClosed(ms: number): Promise<boolean> {
    await Promise.race([this.closedPromise, new Promise((r) => setTimeout(r, ms))]);
    return this.closed;
  }

  destroy() {
    this.socket.destroy();
  }
}

interface FloodResult {
  sent: number;
  elapsedMs: number;
  closed: boolean;
  goaway: ReturnType<RawH2['goaway']>;
  frames: Frame[];
}

/**
 * HEADERS (END_STREAM, no END_HEADERS) for `path`, then CONTINUATION frames without END_HEADERS until
 * the gateway closes the connection, `maxFrames` were sent or `maxMs` passed.
 */
async function flood(
  listener: 'main' | 'tls',
  path: string,
  opts: { maxFrames?: number; maxMs?: number; payload?: (i: number) => Buffer } = {},
): Promise<FloodResult> {
  const { maxFrames = 5000, maxMs = 2000, payload = (i: number) => filler(i) } = opts;
  const conn = await RawH2.open(listener);
  const t0 = Date.now();
  let sent = 0;
  try {
    await conn.write(frame(T.HEADERS, END_STREAM, 1, requestBlock(path, conn.scheme)));
    while (sent < maxFrames && !conn.closed && Date.now() - t0 < maxMs) {
      await conn.write(frame(T.CONTINUATION, 0, 1, payload(sent)));
      sent++;
      if (sent % 16 === 0) await new Promise((r) => setImmediate(r));
    }
    const closed = await conn.waitClosed(2000);
    return { sent, elapsedMs: Date.now() - t0, closed, goaway: conn.goaway(), frames: conn.frames };
  } finally {
    conn.destroy();
  }
}

function h2get(client: http2.ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = client.request({ ':path': path });
    s.setTimeout(5000, () => s.close(http2.constants.NGHTTP2_CANCEL));
    s.on('response', (h) => {
      s.resume();
      s.on('end', () => resolve(Number(h[':status'])));
    });
    s.on('error', reject);
    s.on('close', () => resolve(0));
    s.end();
  });
}

function normalClient(listener: 'main' | 'tls'): http2.ClientHttp2Session {
  const addr = gw.gw.addresses.listeners[listener];
  const client =
    listener === 'main'
      ? http2.connect(`http://${addr}`)
      : http2.connect(`https://${addr}`, { ca: ca.certPem, servername: 'localhost' });
  client.on('error', () => {});
  return client;
}

const forwarded = (prefix: string) => up.requests.filter((r) => r.url.startsWith(prefix)).length;

describe('HTTP/2 CONTINUATION frames', () => {
  it('control: a header block split over HEADERS + 5 CONTINUATION frames is a valid request and is forwarded', async () => {
    for (const listener of ['main', 'tls'] as const) {
      const conn = await RawH2.open(listener);
      try {
        await conn.write(frame(T.HEADERS, END_STREAM, 1, requestBlock(`/control/${listener}`, conn.scheme)));
        for (let i = 0; i < 5; i++)
          await conn.write(frame(T.CONTINUATION, i === 4 ? END_HEADERS : 0, 1, filler(i, 100)));
        expect(await conn.waitFor(() => conn.frames.some((f) => f.type === T.HEADERS && f.streamId === 1), 5000)).toBe(
          true,
        );
        const response = conn.frames.find((f) => f.type === T.HEADERS && f.streamId === 1)!;
        expect(statusOf(response.payload)).toBe('200');
        expect(conn.goaway()).toBeUndefined();
        expect(conn.closed).toBe(false);
      } finally {
        conn.destroy();
      }
      const seen = up.requests.filter((r) => r.url === `/control/${listener}`);
      expect(seen).toHaveLength(1);
      expect(seen[0].headers['x-flood-4']).toBe('a'.repeat(100));
    }
  });

  for (const listener of ['main', 'tls'] as const) {
    const via = listener === 'main' ? 'h2c (prior knowledge)' : 'TLS (ALPN h2)';
    it(`${via}: a CONTINUATION flood gets GOAWAY and a closed connection, and nothing goes upstream`, async () => {
      const r = await flood(listener, `/flood-${listener}`, { maxFrames: 5000, maxMs: 2000 });
      expect(r.closed).toBe(true);
      // Closed long before the bounds: nghttp2 stops at the 9th CONTINUATION frame.
      expect(r.sent).toBeLessThan(5000);
      expect(r.elapsedMs).toBeLessThan(2000);
      expect(r.goaway).toBeDefined();
      // Node reports nghttp2's fatal "too many CONTINUATION frames" as INTERNAL_ERROR (0x2).
      expect(r.goaway!.errorCode).not.toBe(0);
      expect(r.goaway!.errorCode).toBe(0x2);
      expect(r.goaway!.lastStreamId).toBeLessThanOrEqual(1);
      // No response was started for the stream.
      expect(r.frames.some((f) => f.type === T.HEADERS)).toBe(false);
      await new Promise((res) => setTimeout(res, 100)); // the point: no stray forward arrives within this window
      expect(forwarded(`/flood-${listener}`)).toBe(0);
    });
  }

  it('empty CONTINUATION frames count the same (no header bytes needed to trip the limit)', async () => {
    const r = await flood('main', '/flood-empty', { maxFrames: 5000, maxMs: 2000, payload: () => Buffer.alloc(0) });
    expect(r.closed).toBe(true);
    expect(r.sent).toBeLessThan(5000);
    expect(r.goaway?.errorCode).toBe(0x2);
    expect(forwarded('/flood-empty')).toBe(0);
  });

  it('the limit is 8 CONTINUATION frames per header block: 8 are held, the 9th ends the connection', async () => {
    const conn = await RawH2.open('main');
    try {
      await conn.write(frame(T.HEADERS, END_STREAM, 1, requestBlock('/threshold', 'http')));
      for (let i = 0; i < 8; i++) await conn.write(frame(T.CONTINUATION, 0, 1, filler(i)));
      // The server answered our SETTINGS, so it has read what precedes them.
      expect(await conn.waitFor(() => conn.frames.some((f) => f.type === T.SETTINGS && f.flags & 0x1), 2000)).toBe(
        true,
      );
      await new Promise((r) => setTimeout(r, 300)); // the point: 8 frames do not end the connection within this window
      expect(conn.closed).toBe(false);
      expect(conn.goaway()).toBeUndefined();
      await conn.write(frame(T.CONTINUATION, 0, 1, filler(8)));
      expect(await conn.waitClosed(2000)).toBe(true);
      expect(conn.goaway()?.errorCode).toBe(0x2);
    } finally {
      conn.destroy();
    }
    expect(forwarded('/threshold')).toBe(0);
  });

  it('a header block over maxHeaderBytes (within 8 frames) gets 431 on its stream; the connection keeps serving', async () => {
    const conn = await RawH2.open('main');
    try {
      await conn.write(frame(T.HEADERS, END_STREAM, 1, requestBlock('/too-big', 'http')));
      // 5 x ~15 KB = ~75 KB of header list, over the default 61440-byte SETTINGS_MAX_HEADER_LIST_SIZE.
      for (let i = 0; i < 5; i++)
        await conn.write(frame(T.CONTINUATION, i === 4 ? END_HEADERS : 0, 1, filler(i, 15_000)));
      expect(await conn.waitFor(() => conn.frames.some((f) => f.type === T.HEADERS && f.streamId === 1), 5000)).toBe(
        true,
      );
      expect(statusOf(conn.frames.find((f) => f.type === T.HEADERS && f.streamId === 1)!.payload)).toBe('431');
      expect(await conn.waitFor(() => conn.frames.some((f) => f.type === T.RST_STREAM && f.streamId === 1), 2000)).toBe(
        true,
      );
      // The same connection still serves a normal request.
      await conn.write(frame(T.HEADERS, END_STREAM | END_HEADERS, 3, requestBlock('/after-431', 'http')));
      expect(await conn.waitFor(() => conn.frames.some((f) => f.type === T.HEADERS && f.streamId === 3), 5000)).toBe(
        true,
      );
      expect(statusOf(conn.frames.find((f) => f.type === T.HEADERS && f.streamId === 3)!.payload)).toBe('200');
      expect(conn.goaway()).toBeUndefined();
    } finally {
      conn.destroy();
    }
    expect(forwarded('/too-big')).toBe(0);
    expect(forwarded('/after-431')).toBe(1);
  });

  it('a normal HTTP/2 client is served during and after repeated floods on both listeners', async () => {
    const normal = normalClient('main');
    const normalTls = normalClient('tls');
    const t0 = Date.now();
    let attacking = true;
    const results: number[] = [];
    const normalLoop = (async () => {
      for (let i = 0; (attacking || i < 20) && i < 2000 && Date.now() - t0 < 10_000; i++) {
        results.push(await h2get(i % 2 ? normalTls : normal, `/normal/${i}`));
      }
    })();
    const floods: FloodResult[] = [];
    try {
      // Up to 40 attacking connections, 4 at a time, bounded to 4 s in total.
      for (let round = 0; round < 10 && Date.now() - t0 < 4000; round++) {
        floods.push(
          ...(await Promise.all(
            [0, 1, 2, 3].map((k) =>
              flood(k % 2 ? 'tls' : 'main', `/flood-concurrent/${round}/${k}`, { maxFrames: 5000, maxMs: 2000 }),
            ),
          )),
        );
      }
    } finally {
      attacking = false;
      await normalLoop;
    }
    expect(floods.length).toBeGreaterThanOrEqual(4);
    for (const f of floods) {
      expect(f.closed).toBe(true);
      expect(f.sent).toBeLessThan(5000);
    }
    expect(results.length).toBeGreaterThanOrEqual(20);
    expect(results.every((s) => s === 200)).toBe(true);
    // The long-lived clients were not disturbed: no GOAWAY for them.
    expect(normal.closed || normal.destroyed).toBe(false);
    expect(normalTls.closed || normalTls.destroyed).toBe(false);
    normal.close();
    normalTls.close();
    await new Promise((res) => setTimeout(res, 100)); // the point: no flood request is forwarded within this window
    expect(forwarded('/flood-concurrent/')).toBe(0);
    expect(forwarded('/normal/')).toBe(results.length);
    // Fresh clients after the floods.
    for (const l of ['main', 'tls'] as const) {
      const c = normalClient(l);
      expect(await h2get(c, `/after/${l}`)).toBe(200);
      c.close();
    }
  });

  it('connections reset in the middle of a header block do not take the gateway down (CVE-2024-27983)', async () => {
    for (let i = 0; i < 40; i++) {
      const conn = await RawH2.open(i % 2 ? 'tls' : 'main');
      conn.socket.write(frame(T.HEADERS, END_STREAM, 1, requestBlock(`/reset/${i}`, conn.scheme)));
      for (let k = 0; k < 1 + (i % 8); k++) conn.socket.write(frame(T.CONTINUATION, 0, 1, filler(k)));
      // Abort with a TCP RST while the server may still be inside the header block.
      if (i % 2) conn.destroy();
      else conn.socket.resetAndDestroy();
    }
    // Fixed wait on purpose: the resets reach the gateway first (a crash would follow them), and no stray
    // forward arrives within this window.
    await new Promise((r) => setTimeout(r, 200));
    for (const l of ['main', 'tls'] as const) {
      const c = normalClient(l);
      expect(await h2get(c, `/after-reset/${l}`)).toBe(200);
      c.close();
    }
    expect(forwarded('/reset/')).toBe(0);
  });

  it('a first request whose header block never ends is closed after about headersTimeout (h2c)', async () => {
    const conn = await RawH2.open('main');
    const t0 = Date.now();
    try {
      await conn.write(frame(T.HEADERS, END_STREAM, 1, requestBlock('/stalled', 'http')));
      await conn.write(frame(T.CONTINUATION, 0, 1, filler(0)));
      expect(await conn.waitClosed(HEADERS_TIMEOUT_MS + 1500)).toBe(true);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 100);
      expect(Date.now() - t0).toBeLessThan(IDLE_TIMEOUT_MS);
      expect(conn.frames.some((f) => f.type === T.HEADERS)).toBe(false);
    } finally {
      conn.destroy();
    }
    expect(forwarded('/stalled')).toBe(0);
  });
});
