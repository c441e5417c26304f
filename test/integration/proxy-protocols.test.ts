import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http2 from 'node:http2';
import http from 'node:http';
import { Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, WebSocket } from 'ws';
import { request } from 'undici';
import { startInProcess, baseConfig, waitFor, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let gw: InProcessGateway;
let counting: TestUpstream;
let trailers: TestUpstream;
let early: http.Server;
let h2up: http2.Http2Server;
const h2Seen: Array<{ path: string; proto: string }> = [];
let wsServer: http.Server;
let wss: WebSocketServer;

beforeAll(async () => {
  // Counts body bytes as they stream, answering with the total.
  counting = await startUpstream(
    (req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(String(n)));
    },
    { stream: true },
  );
  trailers = await startUpstream((_req, res) => {
    res.writeHead(200, { trailer: 'x-checksum' });
    res.write('data');
    res.addTrailers({ 'x-checksum': 'abc' });
    res.end();
  });
  // Answers at once, never reading the request body.
  early = http.createServer((_req, res) => res.end('early'));
  await new Promise<void>((r) => early.listen(0, '127.0.0.1', r));
  h2up = http2.createServer((req, res) => {
    h2Seen.push({ path: req.url, proto: req.httpVersion });
    res.end(`h2 upstream ${req.url}`);
  });
  await new Promise<void>((r) => h2up.listen(0, '127.0.0.1', r));
  wsServer = http.createServer();
  wss = new WebSocketServer({ server: wsServer });
  wss.on('connection', (s) => s.on('message', (m) => s.send(`echo:${m}`)));
  await new Promise<void>((r) => wsServer.listen(0, '127.0.0.1', r));
  const port = (s: { address(): unknown }) => (s.address() as AddressInfo).port;
  gw = await startInProcess(
    baseConfig({
      routes: [
        {
          name: 'upload',
          match: { path: { prefix: '/upload' } },
          cluster: 'counting',
          timeout: '60s',
          maxBodyBytes: 0,
        },
        { name: 'trailers', match: { path: { prefix: '/trailers' } }, cluster: 'trailers' },
        { name: 'h2', match: { path: { prefix: '/h2' } }, cluster: 'h2up' },
        { name: 'early', match: { path: { prefix: '/early' } }, cluster: 'early' },
        { name: 'ws', match: { path: { prefix: '/ws' } }, cluster: 'ws' },
      ],
      clusters: [
        { name: 'counting', endpoints: [{ address: counting.address }] },
        { name: 'trailers', endpoints: [{ address: trailers.address }] },
        { name: 'early', endpoints: [{ address: `127.0.0.1:${port(early)}` }] },
        { name: 'h2up', protocol: 'http2', endpoints: [{ address: `127.0.0.1:${port(h2up)}` }] },
        { name: 'ws', endpoints: [{ address: `127.0.0.1:${port(wsServer)}` }] },
      ],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  await counting?.close();
  await trailers?.close();
  h2up?.close();
  early?.closeAllConnections();
  early?.close();
  wss?.close();
  wsServer?.close();
});

describe('protocols and streaming', () => {
  it('streams a 100 MB upload without buffering it', async () => {
    const total = 100 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 7);
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= total) this.push(null);
        else {
          sent += chunk.length;
          this.push(chunk);
        }
      },
    });
    const heapBefore = process.memoryUsage().rss;
    const r = await request(`${gw.url}/upload`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe(String(total));
    // Gateway, client and upstream share this process: a buffered copy would add >= 100 MB.
    expect(process.memoryUsage().rss - heapBefore).toBeLessThan(80 * 1024 * 1024);
  });

  it('passes response trailers through', async () => {
    const r = await request(`${gw.url}/trailers`);
    expect(await r.body.text()).toBe('data');
    expect(r.trailers['x-checksum']).toBe('abc');
  });

  it('accepts HTTP/2 with prior knowledge (h2c) on the plain listener', async () => {
    const client = http2.connect(gw.url);
    const body = await new Promise<string>((resolve, reject) => {
      const s = client.request({ ':path': '/upload', ':method': 'POST' });
      let out = '';
      s.on('data', (d) => (out += d));
      s.on('end', () => resolve(out));
      s.on('error', reject);
      s.end('hello');
    });
    client.close();
    expect(body).toBe('5');
  });

  it('resets (NO_ERROR) an HTTP/2 upload the upstream answered without reading, so the stream is not left open', async () => {
    const client = http2.connect(gw.url);
    try {
      const stream = client.request({ ':method': 'POST', ':path': '/early' });
      let status = 0;
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('error', () => {});
      stream.resume();
      // More than the 64 KiB stream window: without the reset the rest could never be sent.
      stream.write(Buffer.alloc(512 * 1024));
      await waitFor(() => stream.closed, 5000);
      expect(status).toBe(200);
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
    } finally {
      client.destroy();
    }
  });

  it('proxies to an HTTP/2 (h2c) upstream', async () => {
    const r = await request(`${gw.url}/h2/x`);
    expect(await r.body.text()).toBe('h2 upstream /h2/x');
    expect(h2Seen.at(-1)).toEqual({ path: '/h2/x', proto: '2.0' });
  });

  it('proxies a WebSocket end to end', async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`);
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    const replies: string[] = [];
    ws.on('message', (m) => replies.push(String(m)));
    ws.send('one');
    ws.send('two');
    const end = Date.now() + 3000;
    while (replies.length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    ws.close();
    expect(replies).toEqual(['echo:one', 'echo:two']);
  });

  it('refuses Upgrade: h2c without forwarding it', async () => {
    const r = await new Promise<number>((resolve) => {
      const req = http.request(`${gw.url}/ws`, {
        headers: { connection: 'upgrade, http2-settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAAQAAP__' },
      });
      req.on('response', (res) => resolve(res.statusCode!));
      req.on('upgrade', (res) => resolve(res.statusCode!));
      req.end();
    });
    expect(r).toBe(400);
  });
});
