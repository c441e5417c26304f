import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http2 from 'node:http2';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let gw: InProcessGateway;
let up: TestUpstream;

beforeAll(async () => {
  up = await startUpstream((_req, res) => setTimeout(() => res.end('ok'), 5));
  gw = await startInProcess(baseConfig({
    routes: [{ name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' }],
    clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
  }));
});

afterAll(async () => {
  await gw?.stop();
  await up?.close();
});

function h2get(client: http2.ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = client.request({ ':path': path });
    s.on('response', (h) => { s.resume(); s.on('end', () => resolve(Number(h[':status']))); });
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
