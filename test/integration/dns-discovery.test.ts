import { describe, it, expect, afterEach, beforeAll, afterAll, vi } from 'vitest';
import dgram from 'node:dgram';
import { validateConfig } from '../../src/config/validate.js';
import type { Config } from '../../src/config/schema/index.js';
import { DnsDiscovery } from '../../src/discovery/dns.js';
import { discoveredEndpoints, dnsResolutionFailures } from '../../src/discovery/metrics.js';
import type { EndpointSink } from '../../src/discovery/endpoint-source.js';
import { startDnsmasq, type HostRecords, type TestDnsmasq } from '../helpers/dnsmasq.js';
import { RecordingSink, metricValue } from '../helpers/discovery.js';

type DnsBlock = { name: string; port: number; refresh?: string; mode?: 'strict' | 'logical' };

function config(servers: string[], clusters: Record<string, DnsBlock | undefined>): Config {
  const r = validateConfig(
    {
      gateway: { dns: { servers } },
      clusters: Object.entries(clusters).map(([name, dns]) =>
        dns ? { name, discovery: { dns } } : { name, endpoints: [{ address: '127.0.0.1:9' }] },
      ),
    },
    {},
  );
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const wait = { timeout: 5000, interval: 20 };
const REFRESH = '200ms';

let dns: TestDnsmasq;
beforeAll(async () => {
  dns = await startDnsmasq({});
});
afterAll(async () => {
  await dns?.close();
});

let discovery: DnsDiscovery | undefined;
afterEach(() => {
  discovery?.stop();
  discovery = undefined;
});

/** Serve `records`, discover `clusters` from them, and wait for the first set of each cluster. */
async function discover(
  records: HostRecords,
  clusters: Record<string, DnsBlock>,
): Promise<{ sink: RecordingSink; d: DnsDiscovery }> {
  await dns.setHosts(records);
  const sink = new RecordingSink();
  const d = (discovery = new DnsDiscovery(sink));
  d.reconcile(config([dns.server], clusters));
  await vi.waitFor(() => expect(sink.calls).toHaveLength(Object.keys(clusters).length), wait);
  return { sink, d };
}

describe('DNS discovery against a real dnsmasq', () => {
  it('strict mode publishes every A and AAAA record as a defaulted endpoint, sorted', async () => {
    const { sink, d } = await discover(
      { 'app.svc.test': ['10.0.0.2', '10.0.0.1', 'fd00::1'] },
      { app: { name: 'app.svc.test', port: 8080, refresh: REFRESH } },
    );
    expect(sink.calls).toHaveLength(1);
    const locality = { region: '', zone: '', subzone: '' };
    expect(sink.calls[0]).toMatchObject({ cluster: 'app', source: 'dns' });
    expect(sink.calls[0].endpoints).toEqual([
      { address: '10.0.0.1:8080', weight: 1, priority: 0, locality, labels: {} },
      { address: '10.0.0.2:8080', weight: 1, priority: 0, locality, labels: {} },
      { address: '[fd00::1]:8080', weight: 1, priority: 0, locality, labels: {} },
    ]);
    expect(d.status('app')).toMatchObject({
      source: 'dns',
      target: 'app.svc.test:8080 (strict)',
      endpoints: 3,
      lastError: null,
      stale: false,
    });
    expect(Date.parse(d.status('app')!.lastSuccess!)).toBeGreaterThan(Date.now() - 5000);
    expect(await metricValue(discoveredEndpoints, { cluster: 'app', source: 'dns' })).toBe(3);
    expect(d.status('other')).toBeUndefined();
  });

  it('follows a changed answer within one refresh, and does not hand an unchanged answer again', async () => {
    const { sink, d } = await discover(
      { 'follow.svc.test': ['10.0.1.1'] },
      { follow: { name: 'follow.svc.test', port: 80, refresh: REFRESH } },
    );

    // Several more lookups with the same answer: each a success, none handed.
    const successes = new Set<string>();
    await vi.waitFor(() => {
      successes.add(d.status('follow')!.lastSuccess!);
      expect(successes.size).toBeGreaterThanOrEqual(4);
    }, wait);
    expect(sink.calls).toHaveLength(1);

    await dns.setHosts({ 'follow.svc.test': ['10.0.1.1', '10.0.1.2'] });
    const reloaded = Date.now();
    await vi.waitFor(() => expect(sink.calls).toHaveLength(2), wait);
    expect(sink.addresses('follow')[1]).toEqual(['10.0.1.1:80', '10.0.1.2:80']);
    // The next lookup is at most one refresh (200 ms) away; allow the lookup and timer slack.
    expect(sink.calls[1].at - reloaded).toBeLessThan(500);
  });

  it('keeps the last endpoints while the DNS server is down, reports stale with the error, counts failures, and recovers', async () => {
    const { sink, d } = await discover(
      { 'outage.svc.test': ['10.0.2.1'] },
      { outage: { name: 'outage.svc.test', port: 80, refresh: REFRESH } },
    );
    const before = (await metricValue(dnsResolutionFailures, { cluster: 'outage' })) ?? 0;

    await dns.stop();
    try {
      await vi.waitFor(
        async () =>
          expect(await metricValue(dnsResolutionFailures, { cluster: 'outage' })).toBeGreaterThanOrEqual(before + 2),
        wait,
      );
      expect(d.status('outage')).toMatchObject({
        endpoints: 1,
        stale: true,
        lastError: expect.stringContaining('ECONNREFUSED'),
      });
      expect(sink.calls).toHaveLength(1);
      expect(await metricValue(discoveredEndpoints, { cluster: 'outage', source: 'dns' })).toBe(1);
    } finally {
      await dns.start();
    }
    // The failure backoff is jittered: a few retries may be up to a few hundred ms apart.
    await vi.waitFor(() => expect(d.status('outage')).toMatchObject({ stale: false, lastError: null }), {
      timeout: 10_000,
      interval: 20,
    });
    expect(sink.calls).toHaveLength(1);
  });

  it('keeps the last endpoints when the name disappears (NXDOMAIN)', async () => {
    const { sink, d } = await discover(
      { 'gone.svc.test': ['10.0.3.1', '10.0.3.2'] },
      { gone: { name: 'gone.svc.test', port: 80, refresh: REFRESH } },
    );

    await dns.setHosts({});
    await vi.waitFor(
      () =>
        expect(d.status('gone')).toMatchObject({
          stale: true,
          lastError: 'no A or AAAA records for gone.svc.test (ENOTFOUND)',
        }),
      wait,
    );
    expect(d.status('gone')!.endpoints).toBe(2);
    expect(sink.calls).toHaveLength(1);
    expect(await metricValue(dnsResolutionFailures, { cluster: 'gone' })).toBeGreaterThanOrEqual(1);
  });

  it('treats an AAAA answer with no A record (NODATA) as an answer', async () => {
    const { sink, d } = await discover(
      { 'v6only.svc.test': ['fd00::7'] },
      { v6only: { name: 'v6only.svc.test', port: 443, refresh: REFRESH } },
    );
    expect(sink.addresses('v6only')).toEqual([['[fd00::7]:443']]);
    expect(d.status('v6only')).toMatchObject({ stale: false, lastError: null });
  });

  it('logical mode publishes one endpoint, the first record, and moves it when the first record changes', async () => {
    const { sink, d } = await discover(
      { 'logical.svc.test': ['10.0.4.9', '10.0.4.1', 'fd00::4'] },
      { logical: { name: 'logical.svc.test', port: 8443, refresh: REFRESH, mode: 'logical' } },
    );
    expect(sink.addresses('logical')).toEqual([['10.0.4.9:8443']]);
    expect(d.status('logical')).toMatchObject({ target: 'logical.svc.test:8443 (logical)', endpoints: 1 });

    await dns.setHosts({ 'logical.svc.test': ['10.0.4.1', 'fd00::4'] });
    await vi.waitFor(() => expect(sink.addresses('logical')).toEqual([['10.0.4.9:8443'], ['10.0.4.1:8443']]), wait);
  });

  it('reconcile stops a cluster that lost its block and restarts one whose block changed', async () => {
    const { sink, d } = await discover(
      { 'a.svc.test': ['10.0.5.1'], 'b.svc.test': ['10.0.6.1'] },
      { a: { name: 'a.svc.test', port: 80, refresh: REFRESH }, b: { name: 'b.svc.test', port: 80, refresh: REFRESH } },
    );

    // The same blocks again: nothing restarts, nothing is handed again.
    d.reconcile(
      config([dns.server], {
        a: { name: 'a.svc.test', port: 80, refresh: REFRESH },
        b: { name: 'b.svc.test', port: 80, refresh: REFRESH },
      }),
    );
    // a loses its block; b changes port.
    d.reconcile(config([dns.server], { a: undefined, b: { name: 'b.svc.test', port: 81, refresh: REFRESH } }));
    expect(d.status('a')).toBeUndefined();
    expect(await metricValue(discoveredEndpoints, { cluster: 'a', source: 'dns' })).toBeUndefined();
    await vi.waitFor(() => expect(sink.addresses('b')).toEqual([['10.0.6.1:80'], ['10.0.6.1:81']]), wait);

    await dns.setHosts({ 'a.svc.test': ['10.0.5.1', '10.0.5.2'], 'b.svc.test': ['10.0.6.1'] });
    await sleep(1000); // five refreshes of the stopped loop
    expect(sink.addresses('a')).toEqual([['10.0.5.1:80']]);
    expect(sink.calls).toHaveLength(3);
  });

  it('hands a set the sink refused again at the next lookup, and reports the refusal until then', async () => {
    await dns.setHosts({ 'refused.svc.test': ['10.0.7.1'] });
    const sink = new RecordingSink();
    let refusals = 1;
    const refusing: EndpointSink = {
      setEndpoints: (cluster, endpoints, source) =>
        refusals-- > 0 ? Promise.reject(new Error('workers busy')) : sink.setEndpoints(cluster, endpoints, source),
    };
    const d = (discovery = new DnsDiscovery(refusing));
    d.reconcile(config([dns.server], { refused: { name: 'refused.svc.test', port: 80, refresh: REFRESH } }));
    await vi.waitFor(() => expect(d.status('refused')!.lastError).toBe('endpoints not applied: workers busy'), wait);
    await vi.waitFor(() => expect(sink.addresses('refused')).toEqual([['10.0.7.1:80']]), wait);
    expect(d.status('refused')).toMatchObject({ lastError: null, stale: false });
  });

  it('gives up on a server that never answers within about 1.6 s, and stop() cancels a lookup in flight', async () => {
    const blackhole = dgram.createSocket('udp4');
    await new Promise<void>((r) => blackhole.bind(0, '127.0.0.1', r));
    let queries = 0;
    blackhole.on('message', () => queries++);
    try {
      const server = `127.0.0.1:${blackhole.address().port}`;
      const sink = new RecordingSink();
      const d = (discovery = new DnsDiscovery(sink));
      const started = Date.now();
      d.reconcile(config([server], { silent: { name: 'silent.svc.test', port: 80, refresh: '5s' } }));
      await vi.waitFor(() => expect(d.status('silent')!.lastError).toContain('ETIMEOUT'), wait);
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThan(1000);
      expect(elapsed).toBeLessThan(2500);
      expect(d.status('silent')).toMatchObject({ endpoints: 0, stale: true, lastSuccess: null });

      // A second discovery, stopped while its first query waits for the silent server.
      const failures = (await metricValue(dnsResolutionFailures, { cluster: 'cancelled' })) ?? 0;
      const other = new DnsDiscovery(sink);
      const queried = queries; // the first discovery's next lookup is 5 s or more away
      other.reconcile(config([server], { cancelled: { name: 'silent.svc.test', port: 80, refresh: '200ms' } }));
      await vi.waitFor(() => expect(queries).toBeGreaterThan(queried), wait); // its first query is in flight
      other.stop();
      await sleep(2000); // the point: past the ~1.6 s give-up of the cancelled lookup, and nothing follows
      expect(other.status('cancelled')).toBeUndefined();
      expect((await metricValue(dnsResolutionFailures, { cluster: 'cancelled' })) ?? 0).toBe(failures);
      expect(sink.calls).toHaveLength(0);
    } finally {
      blackhole.close();
    }
  });
});
