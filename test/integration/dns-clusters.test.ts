import { describe, it, expect, afterEach } from 'vitest';
import { request } from 'undici';
import { upstreamsOnOnePort, loadLoop } from '../helpers/loopback-upstreams.js';
import { startInProcess, spawnGateway, baseConfig, waitFor } from '../helpers/gateway.js';
import { startDnsmasq, type TestDnsmasq } from '../helpers/dnsmasq.js';

/**
 * DNS clusters through a running gateway (issue 17 slice 3): a real dnsmasq on a loopback port serves
 * a hosts file the test rewrites; upstreams listen on 127.0.0.2/127.0.0.3 (same port), so each record
 * is a distinct endpoint. Traffic runs through every change and must not fail.
 */
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

const IPS = ['127.0.0.2', '127.0.0.3'];

async function upstreams(): Promise<{ port: number; connections: Record<string, number> }> {
  const u = await upstreamsOnOnePort(IPS);
  cleanup.push(u.close);
  return u;
}

async function dnsmasq(records: Record<string, string[]>): Promise<TestDnsmasq> {
  const dns = await startDnsmasq(records);
  cleanup.push(() => dns.close());
  return dns;
}

const dnsCluster = (server: string, port: number, mode: 'strict' | 'logical' = 'strict') =>
  baseConfig({
    gateway: { name: 'dns', workers: 1, accessLog: { enabled: false }, dns: { servers: [server] } },
    routes: [{ name: 'app', match: { path: { prefix: '/' } }, cluster: 'app' }],
    clusters: [{ name: 'app', discovery: { dns: { name: 'app.test', port, refresh: '200ms', mode } } }],
  });

interface Status {
  discovery?: {
    source: string;
    target: string;
    endpoints: number;
    stale: boolean;
    lastError: string | null;
    lastSuccess: string | null;
  };
  endpoints: Array<{ address: string }>;
}

describe('DNS clusters in a running gateway', () => {
  it('strict: endpoints follow the records within refresh with no failed request; DNS down keeps the last endpoints, visible in status and a metric', async () => {
    const { port } = await upstreams();
    const dns = await dnsmasq({ 'app.test': [IPS[0]] });
    const gw = await startInProcess(dnsCluster(dns.server, port));
    cleanup.push(() => gw.stop());
    const status = async () => (await (await request(`${gw.admin}/clusters/app/status`)).body.json()) as Status;
    // Start waited for the first lookup: the first request already has an endpoint.
    expect(await (await request(`${gw.url}/`)).body.text()).toBe(IPS[0]);
    const s0 = await status();
    expect(s0.discovery).toMatchObject({
      source: 'dns',
      target: `app.test:${port} (strict)`,
      endpoints: 1,
      stale: false,
      lastError: null,
    });
    expect(s0.endpoints.map((e) => e.address)).toEqual([`${IPS[0]}:${port}`]);

    const load = loadLoop(`${gw.url}/`);
    cleanup.push(() => load.stop());
    await dns.setHosts({ 'app.test': IPS });
    const added = Date.now();
    let mark = load.seen.length;
    await waitFor(() => load.since(mark).has(IPS[1]), 3000);
    // Followed within refresh (200 ms) plus a lookup and a delta; a generous bound for a loaded CI machine.
    expect(Date.now() - added).toBeLessThan(2000);
    expect((await status()).endpoints.map((e) => e.address).sort()).toEqual(IPS.map((ip) => `${ip}:${port}`));

    await dns.setHosts({ 'app.test': [IPS[1]] });
    await waitFor(async () => (await status()).endpoints.length === 1, 3000);
    mark = load.seen.length;
    await waitFor(() => load.seen.length > mark + 50, 5000);
    expect(load.since(mark)).toEqual(new Set([IPS[1]]));

    // DNS down: the last endpoints stay; status says stale, with the error; the failure counter grows.
    await dns.stop();
    await waitFor(async () => (await status()).discovery?.stale === true, 6000);
    const down = await status();
    expect(down.discovery!.lastError).toBeTruthy();
    expect(down.endpoints.map((e) => e.address)).toEqual([`${IPS[1]}:${port}`]);
    mark = load.seen.length;
    await waitFor(() => load.seen.length > mark + 50, 5000);
    expect(load.since(mark)).toEqual(new Set([IPS[1]]));
    const metrics = await (await request(`${gw.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/meridian_dns_resolution_failures_total\{cluster="app"\} [1-9]/);
    expect(metrics).toMatch(/meridian_discovery_endpoints\{cluster="app",source="dns"\} 1/);

    await load.stop();
    expect(load.failures).toEqual([]);
  });

  it('logical: one endpoint, the first record; when it changes, new connections go to the new address (2 workers)', async () => {
    const { port, connections } = await upstreams();
    const dns = await dnsmasq({ 'app.test': [IPS[0], IPS[1]] });
    const cfg = dnsCluster(dns.server, port, 'logical');
    (cfg.gateway as { workers: number }).workers = 2;
    const gw = await spawnGateway(cfg);
    cleanup.push(() => gw.stop());
    const status = async () => (await (await request(`${gw.admin}/clusters/app/status`)).body.json()) as Status;
    expect((await status()).endpoints.map((e) => e.address)).toEqual([`${IPS[0]}:${port}`]);
    for (let i = 0; i < 10; i++) expect(await (await request(`${gw.url}/`)).body.text()).toBe(IPS[0]);
    await dns.setHosts({ 'app.test': [IPS[1], IPS[0]] });
    await waitFor(async () => (await status()).endpoints[0]?.address === `${IPS[1]}:${port}`, 3000);
    // Both workers got the delta: every request now lands on the new first record.
    await waitFor(async () => (await (await request(`${gw.url}/`)).body.text()) === IPS[1], 3000);
    for (let i = 0; i < 20; i++) expect(await (await request(`${gw.url}/`)).body.text()).toBe(IPS[1]);
    expect(connections[IPS[1]]).toBeGreaterThan(0);
  });

  it('a discovery block added and removed through the admin API starts and stops the lookups; endpoints and discovery are exclusive', async () => {
    const { port } = await upstreams();
    const dns = await dnsmasq({ 'app.test': [IPS[0]] });
    const gw = await startInProcess(
      baseConfig({
        gateway: { name: 'dns', workers: 1, accessLog: { enabled: false }, dns: { servers: [dns.server] } },
        routes: [{ name: 'app', match: { path: { prefix: '/' } }, cluster: 'app' }],
        clusters: [{ name: 'app', endpoints: [{ address: `${IPS[1]}:${port}` }] }],
      }),
    );
    cleanup.push(() => gw.stop());
    expect(await (await request(`${gw.url}/`)).body.text()).toBe(IPS[1]);
    const both = await request(`${gw.admin}/clusters/app`, {
      method: 'PUT',
      body: JSON.stringify({
        endpoints: [{ address: `${IPS[1]}:${port}` }],
        discovery: { dns: { name: 'app.test', port } },
      }),
    });
    expect(both.statusCode).toBe(400);
    expect(JSON.stringify(await both.body.json())).toContain('clusters[0].discovery');
    expect(await (await request(`${gw.url}/`)).body.text()).toBe(IPS[1]);
    const put = await request(`${gw.admin}/clusters/app`, {
      method: 'PUT',
      body: JSON.stringify({ discovery: { dns: { name: 'app.test', port, refresh: '200ms' } } }),
    });
    expect(put.statusCode).toBe(200);
    await put.body.dump();
    await waitFor(async () => (await (await request(`${gw.url}/`)).body.text()) === IPS[0], 3000);
    const back = await request(`${gw.admin}/clusters/app`, {
      method: 'PUT',
      body: JSON.stringify({ endpoints: [{ address: `${IPS[1]}:${port}` }] }),
    });
    expect(back.statusCode).toBe(200);
    await back.body.dump();
    // Records change after the block is gone: nothing follows them any more.
    await dns.setHosts({ 'app.test': [IPS[0], IPS[1]] });
    await new Promise((r) => setTimeout(r, 600)); // the point: three 200ms refreshes' worth of time, and nothing follows
    for (let i = 0; i < 10; i++) expect(await (await request(`${gw.url}/`)).body.text()).toBe(IPS[1]);
    const s = (await (await request(`${gw.admin}/clusters/app/status`)).body.json()) as Status;
    expect(s.discovery).toBeUndefined();
  });
});
