import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import { Agent, request } from 'undici';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';

/**
 * An upstream that closes every keep-alive connection right after its response (no
 * `Connection: close` to warn the client): the gateway's next request on that connection races the
 * close. A request that failed on a reused connection before any response byte arrived must be sent
 * again once on a fresh connection when it is safe to (idempotent, or its body was never read).
 */
let gw: InProcessGateway;
let up: net.Server;
let served = 0;

beforeAll(async () => {
  up = net.createServer((socket) => {
    let buf = '';
    let closing = false;
    socket.on('error', () => undefined);
    socket.on('data', (d) => {
      // Once it decided to close, the server reads no more requests (a request racing the close is lost).
      if (closing) return;
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buf.slice(0, end);
      const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      buf = buf.slice(end + 4 + length);
      served++;
      closing = true;
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      // Close a moment later, as a server whose keep-alive timeout is ~0 does.
      setTimeout(() => socket.end(), Math.random() * 3);
    });
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  gw = await startInProcess(
    baseConfig({
      routes: [{ name: 'all', match: { path: { prefix: '/' } }, cluster: 'closer' }],
      clusters: [{ name: 'closer', endpoints: [{ address: `127.0.0.1:${(up.address() as net.AddressInfo).port}` }] }],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  up?.close();
});

async function run(total: number, concurrency: number, method: 'GET' | 'POST') {
  const agent = new Agent({ connections: concurrency });
  const statuses: Record<string, number> = {};
  let next = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total && Date.now() - t0 < 60_000) {
        next++;
        const r = await request(`${gw.url}/x`, {
          dispatcher: agent,
          method,
          body: method === 'POST' ? 'payload' : undefined,
        });
        await r.body.dump();
        const key = `${r.statusCode}${r.headers['x-meridian-error'] ? ` ${r.headers['x-meridian-error']}` : ''}`;
        statuses[key] = (statuses[key] ?? 0) + 1;
      }
    }),
  );
  await agent.close();
  return statuses;
}

describe('an upstream that closes after every response, no retry policy', () => {
  it('10,000 GETs: none fails', async () => {
    const statuses = await run(10_000, 20, 'GET');
    expect(statuses).toEqual({ 200: 10_000 });
  }, 90_000);

  it('a POST whose body was sent is never sent twice: the upstream served exactly the 200s', async () => {
    const before = served;
    const statuses = await run(2000, 20, 'POST');
    const ok = statuses[200] ?? 0;
    expect(ok + (statuses['502 upstream_reset'] ?? 0)).toBe(2000);
    expect(served - before).toBe(ok);
  }, 60_000);
});
