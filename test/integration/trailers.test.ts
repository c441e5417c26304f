import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { TestCa } from '../helpers/pki.js';

/**
 * Response trailers in every direction: HTTP/1.1 and HTTP/2 (cleartext and TLS) upstreams, to
 * HTTP/1.1 and h2c clients. Each upstream streams a body big enough to be paused by backpressure
 * (the case where trailers used to overtake the last body bytes) and ends with two trailers.
 */
const BODY = Buffer.alloc(2 * 1024 * 1024, 0x62);

let gw: InProcessGateway;
const servers: Array<http.Server | http2.Http2Server | http2.Http2SecureServer> = [];

function respond(res: http.ServerResponse | http2.Http2ServerResponse) {
  res.writeHead(200, { 'content-type': 'application/octet-stream', trailer: 'x-checksum, x-count' });
  res.write(BODY);
  res.addTrailers({ 'x-checksum': 'abc123', 'x-count': String(BODY.length) });
  res.end();
}

async function listen(s: http.Server | http2.Http2Server | http2.Http2SecureServer): Promise<string> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `127.0.0.1:${(s.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  const ca = new TestCa('trailers CA');
  const cert = ca.server();
  const h1 = await listen(http.createServer((_req, res) => respond(res)));
  const h2c = await listen(http2.createServer((_req, res) => respond(res)));
  const h2tls = await listen(
    http2.createSecureServer({ cert: cert.certPem, key: cert.keyPem }, (_req, res) => respond(res)),
  );
  gw = await startInProcess(
    baseConfig({
      routes: ['h1', 'h2c', 'h2tls'].map((name) => ({ name, match: { path: { prefix: `/${name}` } }, cluster: name })),
      clusters: [
        { name: 'h1', endpoints: [{ address: h1 }] },
        { name: 'h2c', protocol: 'http2', endpoints: [{ address: h2c }] },
        {
          name: 'h2tls',
          protocol: 'http2',
          endpoints: [{ address: h2tls }],
          upstreamTls: { ca: ca.cert, sni: 'localhost' },
        },
      ],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  for (const s of servers) s.close();
});

/** HTTP/1.1 client that reads slowly at first, so the gateway's writes back up. */
async function viaHttp1(path: string) {
  const r = await request(`${gw.url}${path}`, { headers: { te: 'trailers' } });
  await new Promise((res) => setTimeout(res, 100)); // deliberate: read late, so the gateway's writes back up
  const body = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, body, trailers: r.trailers };
}

async function viaH2c(path: string) {
  const session = http2.connect(gw.url);
  try {
    const stream = session.request({ ':path': path, te: 'trailers' });
    const chunks: Buffer[] = [];
    let trailers: http2.IncomingHttpHeaders = {};
    stream.on('trailers', (t) => (trailers = t));
    const headers = await new Promise<http2.IncomingHttpHeaders>((r) => stream.once('response', r));
    stream.pause();
    await new Promise((res) => setTimeout(res, 100)); // deliberate: read late, so the gateway's writes back up
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.resume();
    await new Promise((r) => stream.once('end', r));
    return { status: headers[':status'], body: Buffer.concat(chunks), trailers };
  } finally {
    session.close();
  }
}

describe.each([
  ['HTTP/1.1', viaHttp1],
  ['h2c', viaH2c],
])('trailers to an %s client', (_client, fetchVia) => {
  it.each(['h1', 'h2c', 'h2tls'])('from the %s upstream, after the whole body', async (upstream) => {
    const r = await fetchVia(`/${upstream}`);
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(BODY.length);
    expect(r.body.equals(BODY)).toBe(true);
    expect(r.trailers['x-checksum']).toBe('abc123');
    expect(r.trailers['x-count']).toBe(String(BODY.length));
  });
});
