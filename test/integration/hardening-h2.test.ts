import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http2 from 'node:http2';
import net from 'node:net';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let gw: InProcessGateway;
let up: TestUpstream;

beforeAll(async () => {
  up = await startUpstream((_req, res) => setTimeout(() => res.end('ok'), 5));
  gw = await startInProcess(
    baseConfig({
      routes: [{ name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' }],
      clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  await up?.close();
});

function h2get(client: http2.ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = client.request({ ':path': path });
    s.on('response', (h) => {
      s.resume();
      s.on('end', () => resolve(Number(h[':status'])));
    });
    s.on('error', reject);
    s.end();
  });
}

describe('HTTP/2 abuse', () => {
  it('advertises at most 100 concurrent streams', async () => {
    const client = http2.connect(gw.url);
    await new Promise((r) => client.once('remoteSettings', r));
    expect(client.remoteSettings.maxConcurrentStreams).toBe(100);
    client.close();
  });

  it('keeps 64 KiB stream windows but opens the connection window to 1 MiB', async () => {
    const client = http2.connect(gw.url);
    expect(await h2get(client, '/')).toBe(200);
    expect(client.remoteSettings.initialWindowSize).toBe(65535);
    expect(client.state.remoteWindowSize).toBeGreaterThanOrEqual(1024 * 1024 - 65535);
    client.close();
  });

  it('recognizes an h2c preface that arrives in pieces', async () => {
    const { port } = new URL(gw.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const first = new Promise<Buffer>((r) => socket.once('data', r));
    socket.write('PRI * HT');
    await new Promise((r) => setTimeout(r, 50)); // deliberate pacing: the preface arrives in two pieces
    socket.write('TP/2.0\r\n\r\nSM\r\n\r\n');
    socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // empty SETTINGS
    const reply = await first;
    expect(reply.toString('latin1', 0, 8)).not.toBe('HTTP/1.1');
    expect(reply[3]).toBe(4); // the server's SETTINGS frame
    socket.destroy();
  });

  it('survives a rapid-reset flood while a normal client keeps being served', async () => {
    const attacker = http2.connect(gw.url);
    attacker.on('error', () => {});
    let attackerClosed = false;
    attacker.on('close', () => (attackerClosed = true));
    const normal = http2.connect(gw.url);
    const normalResults: number[] = [];
    const normalLoop = (async () => {
      for (let i = 0; i < 50; i++) normalResults.push(await h2get(normal, `/normal/${i}`));
    })();
    // Open and immediately cancel streams (CVE-2023-44487), bounded to 3000 frames pairs.
    for (let i = 0; i < 3000 && !attackerClosed && !attacker.destroyed; i++) {
      try {
        const s = attacker.request({ ':path': `/reset/${i}` });
        s.on('error', () => {});
        s.close(http2.constants.NGHTTP2_CANCEL);
      } catch {
        break;
      }
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    await normalLoop;
    normal.close();
    attacker.destroy();
    expect(normalResults).toEqual(Array(50).fill(200));
    // Cancelled streams must not have turned into 3000 upstream requests.
    expect(up.requests.filter((r) => r.url.startsWith('/reset/')).length).toBeLessThan(3000);
  });
});
