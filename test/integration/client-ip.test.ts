import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { request } from 'undici';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * The client IP that rate-limit keys and RBAC `sourceCidr` see: the TCP peer at the edge
 * (`trustForwardedHeaders: false`), the right-most X-Forwarded-For entry behind a trusted proxy.
 */

let up: TestUpstream;
const gateways: Record<'edge' | 'behindProxy', InProcessGateway> = {} as never;

function config(trustForwardedHeaders: boolean) {
  return baseConfig({
    gateway: { name: 'client-ip', workers: 1, trustForwardedHeaders, accessLog: { enabled: false } },
    rbac: [
      {
        name: 'no-doc-net',
        rules: [{ action: 'deny', principals: [{ sourceCidr: '203.0.113.0/24' }] }, { action: 'allow' }],
      },
      { name: 'loopback-only', rules: [{ action: 'allow', principals: [{ sourceCidr: '127.0.0.1' }] }] },
    ],
    rateLimits: [{ name: 'per-ip', key: [{ source: 'clientIp' }], limit: { requests: 2, per: '60s' } }],
    routes: [
      { name: 'deny', match: { path: { prefix: '/deny' } }, cluster: 'up', rbac: 'no-doc-net' },
      { name: 'loopback', match: { path: { prefix: '/loopback' } }, cluster: 'up', rbac: 'loopback-only' },
      { name: 'limited', match: { path: { prefix: '/rl' } }, cluster: 'up', rateLimits: ['per-ip'] },
      { name: 'open', match: { path: { prefix: '/' } }, cluster: 'up' },
    ],
    clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
  });
}

beforeAll(async () => {
  up = await startUpstream((req, res) => res.end(JSON.stringify({ xff: req.headers['x-forwarded-for'] ?? null })));
  gateways.edge = await startInProcess(config(false));
  gateways.behindProxy = await startInProcess(config(true));
});

afterAll(async () => {
  await gateways.edge?.stop();
  await gateways.behindProxy?.stop();
  await up?.close();
});

async function status(gw: InProcessGateway, path: string, xff?: string | string[]): Promise<number> {
  const r = await request(`${gw.url}${path}`, { headers: xff === undefined ? {} : { 'x-forwarded-for': xff } });
  await r.body.dump();
  return r.statusCode;
}

describe('client IP at the edge (trustForwardedHeaders: false)', () => {
  it('ignores X-Forwarded-For for RBAC sourceCidr: the peer decides', async () => {
    expect(await status(gateways.edge, '/deny', '203.0.113.5')).toBe(200);
    expect(await status(gateways.edge, '/loopback', '198.51.100.7')).toBe(200);
  });

  it('keys rate limits on the peer, whatever X-Forwarded-For claims', async () => {
    const seen = [];
    for (let i = 1; i <= 3; i++) seen.push(await status(gateways.edge, '/rl', `198.51.100.${i}`));
    expect(seen).toEqual([200, 200, 429]);
  });

  it('replaces the client X-Forwarded-For with the peer upstream', async () => {
    const r = await request(`${gateways.edge.url}/x`, { headers: { 'x-forwarded-for': '203.0.113.5' } });
    expect(JSON.parse(await r.body.text()).xff).toBe('127.0.0.1');
  });
});

describe('client IP behind a trusted proxy (trustForwardedHeaders: true)', () => {
  const gw = () => gateways.behindProxy;

  it('takes the right-most X-Forwarded-For entry for RBAC sourceCidr', async () => {
    expect(await status(gw(), '/deny', '203.0.113.5')).toBe(403);
    expect(await status(gw(), '/deny', '198.51.100.7, 203.0.113.5')).toBe(403);
    expect(await status(gw(), '/deny', '::ffff:203.0.113.5')).toBe(403);
    // Entries left of the right-most one are client-written: they cannot get a client denied or allowed.
    expect(await status(gw(), '/deny', '203.0.113.5, 198.51.100.7')).toBe(200);
    expect(await status(gw(), '/loopback', '127.0.0.1, 198.51.100.7')).toBe(403);
  });

  it('reads the last of several X-Forwarded-For headers', async () => {
    expect(await status(gw(), '/deny', ['198.51.100.7', '203.0.113.9'])).toBe(403);
    expect(await status(gw(), '/deny', ['203.0.113.9', '198.51.100.7'])).toBe(200);
  });

  it('falls back to the peer without X-Forwarded-For or when its last entry is not an address', async () => {
    expect(await status(gw(), '/loopback')).toBe(200);
    expect(await status(gw(), '/loopback', 'not-an-ip')).toBe(200);
    expect(await status(gw(), '/loopback', '198.51.100.7, ')).toBe(200);
    expect(await status(gw(), '/loopback', '198.51.100.7')).toBe(403);
  });

  it('keys rate limits per forwarded client', async () => {
    const a = [];
    for (let i = 0; i < 3; i++) a.push(await status(gw(), '/rl', '203.0.113.200, 198.51.100.1'));
    expect(a).toEqual([200, 200, 429]);
    // Another client behind the same proxy has its own bucket.
    expect(await status(gw(), '/rl', '203.0.113.200, 198.51.100.2')).toBe(200);
  });

  it('keeps the client X-Forwarded-For and appends the peer upstream', async () => {
    const r = await request(`${gw().url}/x`, { headers: { 'x-forwarded-for': '198.51.100.7' } });
    expect(JSON.parse(await r.body.text()).xff).toBe('198.51.100.7, 127.0.0.1');
  });
});
