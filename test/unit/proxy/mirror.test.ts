import { describe, it, expect, afterEach } from 'vitest';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { MirrorTee, sendMirror, type MirrorPolicy } from '../../../src/proxy/mirror.js';
import type { ClusterRuntime } from '../../../src/cluster/cluster-manager.js';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** A real upstream recording what reaches it, and a mirror cluster of one host dispatching to it through a real undici Pool. */
async function mirrorUpstream() {
  const seen: Array<{ url: string; host: string; body: string }> = [];
  const arrived: Array<() => void> = [];
  const server: Server = createServer(async (req, res) => {
    let body = '';
    for await (const c of req) body += c;
    seen.push({ url: req.url!, host: req.headers.host!, body });
    res.end('mirror');
    arrived.shift()?.();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const pool = new Pool(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  cleanup.push(
    () => pool.close(),
    () => new Promise((r) => server.close(r)),
  );
  // The cluster's load balancer is the only stand-in: one host whose pool is real.
  const cluster = { lb: { pick: () => ({ pool }) } } as unknown as ClusterRuntime;
  return { seen, cluster, next: () => new Promise<void>((r) => arrived.push(r)) };
}

const opts = (): Dispatcher.DispatchOptions => ({
  path: '/orders?x=1',
  method: 'POST',
  headers: ['host', 'shop.example', 'content-type', 'text/plain'],
});

describe('request mirroring', () => {
  it('a body-less request is copied at once, its Host suffixed with -shadow (as Envoy does)', async () => {
    const up = await mirrorUpstream();
    const arrived = up.next();
    sendMirror(up.cluster, { ...opts(), method: 'GET' });
    await arrived;
    expect(up.seen).toEqual([{ url: '/orders?x=1', host: 'shop.example-shadow', body: '' }]);
  });

  it('a body passes through the tee whole and untouched; the mirror gets the copy once it ended', async () => {
    const up = await mirrorUpstream();
    const policy: MirrorPolicy = { cluster: up.cluster, fraction: 1, maxBodyBytes: 1024 };
    const o = opts();
    const arrived = up.next();
    const tee = new MirrorTee(Readable.from([Buffer.from('a=1&'), Buffer.from('b=2')]), o, policy);
    let primary = '';
    for await (const c of tee) primary += c;
    expect(primary).toBe('a=1&b=2');
    await arrived;
    expect(up.seen).toEqual([{ url: '/orders?x=1', host: 'shop.example-shadow', body: 'a=1&b=2' }]);
  });

  it('a body over the mirror limit still reaches the primary whole, and no mirror is sent', async () => {
    const up = await mirrorUpstream();
    const policy: MirrorPolicy = { cluster: up.cluster, fraction: 1, maxBodyBytes: 4 };
    const tee = new MirrorTee(Readable.from([Buffer.from('0123'), Buffer.from('4567')]), opts(), policy);
    let primary = '';
    for await (const c of tee) primary += c;
    expect(primary).toBe('01234567');
    // A marker sent after the body ended arrives after any mirror the tee would have sent (it dispatches at its end).
    const arrived = up.next();
    sendMirror(up.cluster, { ...opts(), path: '/marker', method: 'GET' });
    await arrived;
    expect(up.seen.map((s) => s.url)).toEqual(['/marker']);
  });

  it('a mirror cluster without a host is skipped without touching the primary request', () => {
    const empty = { lb: { pick: () => undefined } } as unknown as ClusterRuntime;
    expect(() => sendMirror(empty, opts())).not.toThrow();
  });
});
