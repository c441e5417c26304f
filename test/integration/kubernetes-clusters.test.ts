import { describe, it, expect, afterEach } from 'vitest';
import { request } from 'undici';
import autocannon from 'autocannon';
import type { V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { spawnGateway, baseConfig, waitFor, tempDir } from '../helpers/gateway.js';
import { startHub } from '../../src/hub/control-plane.js';
import { closedPort } from '../helpers/upstream.js';
import { TestCa } from '../helpers/pki.js';
import { KubeApiServer } from '../helpers/kube-api.js';
import { upstreamsOnOnePort } from '../helpers/loopback-upstreams.js';

/**
 * Kubernetes clusters through a running gateway (issue 18): the stand-in API server serves the
 * EndpointSlices of a Service whose "pods" are HTTP servers on 127.0.0.2-4 (one port). A rolling
 * deployment (new pod ready, old pod terminating, old pod gone) runs under load with no failed request,
 * through both workers of a spawned gateway.
 */
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

const IPS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];

function pod(name: string, ip: string, state: 'ready' | 'terminating' = 'ready', zone = 'zone-a'): V1Endpoint {
  const ready = state === 'ready';
  return {
    addresses: [ip],
    conditions: { ready, serving: true, terminating: !ready },
    zone,
    nodeName: `node-${zone}`,
    targetRef: { kind: 'Pod', namespace: 'shop', name },
  };
}

/** A slice as the EndpointSlice controller writes it: the Service's labels (here app: web) copied on. */
function slice(endpoints: V1Endpoint[], port: number): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: 'web-abcde',
      labels: { app: 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port, protocol: 'TCP' }],
    endpoints,
  };
}

/** A spawned gateway with one route to cluster `web`: the pods of Service shop/web, from the stand-in API server. */
async function webGateway(api: KubeApiServer, workers: number) {
  const gw = await spawnGateway(
    baseConfig({
      gateway: {
        name: 'k8s',
        workers,
        accessLog: { enabled: false },
        kubernetes: { kubeconfig: api.writeKubeconfig() },
      },
      routes: [{ name: 'web', match: { path: { prefix: '/' } }, cluster: 'web' }],
      clusters: [{ name: 'web', discovery: { kubernetes: { namespace: 'shop', service: 'web', port: 'http' } } }],
    }),
  );
  cleanup.push(() => gw.stop());
  return gw;
}

interface Status {
  discovery?: { source: string; target: string; endpoints: number; stale: boolean };
  endpoints: Array<{ address: string; health: string; flags: string[]; locality: { zone: string } }>;
}

describe('Kubernetes clusters in a running gateway', () => {
  it('a rolling replacement of every pod under load (autocannon, 2 workers): new pods take traffic, terminating ones drain and go, zero failed requests', async () => {
    const ips = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
    const up = await upstreamsOnOnePort(ips);
    cleanup.push(up.close);
    const api = await KubeApiServer.start();
    cleanup.push(() => api.close());
    const put = (pods: V1Endpoint[]) => api.apply('shop', 'web', slice(pods, up.port));
    put([pod('web-1', ips[0]), pod('web-2', ips[1])]);
    const gw = await webGateway(api, 2);
    const status = async () => (await (await request(`${gw.admin}/clusters/web/status`)).body.json()) as Status;
    // Start waited for the first list: both pods are endpoints, with their zone as locality.
    const s0 = await status();
    expect(s0.discovery).toMatchObject({ source: 'kubernetes', endpoints: 2, stale: false });
    expect(s0.endpoints.map((e) => [e.address, e.health, e.locality.zone])).toEqual([
      [`${ips[0]}:${up.port}`, 'healthy', 'zone-a'],
      [`${ips[1]}:${up.port}`, 'healthy', 'zone-a'],
    ]);

    const load = autocannon({ url: `${gw.url}/`, connections: 10, duration: 5 });
    const addresses = async () =>
      (await status()).endpoints
        .map((e) => `${e.address.split(':')[0]}:${e.flags.includes('draining') ? 'draining' : 'ready'}`)
        .sort();
    // The rollout, one step at a time as a Deployment with maxSurge 1 / maxUnavailable 0 does it.
    const steps: Array<[V1Endpoint[], string[]]> = [
      [
        [pod('web-1', ips[0]), pod('web-2', ips[1]), pod('web-3', ips[2])],
        [`${ips[0]}:ready`, `${ips[1]}:ready`, `${ips[2]}:ready`],
      ],
      [
        [pod('web-1', ips[0], 'terminating'), pod('web-2', ips[1]), pod('web-3', ips[2])],
        [`${ips[0]}:draining`, `${ips[1]}:ready`, `${ips[2]}:ready`],
      ],
      [
        [pod('web-2', ips[1]), pod('web-3', ips[2])],
        [`${ips[1]}:ready`, `${ips[2]}:ready`],
      ],
      [
        [pod('web-2', ips[1]), pod('web-3', ips[2]), pod('web-4', ips[3])],
        [`${ips[1]}:ready`, `${ips[2]}:ready`, `${ips[3]}:ready`],
      ],
      [
        [pod('web-2', ips[1], 'terminating'), pod('web-3', ips[2]), pod('web-4', ips[3])],
        [`${ips[1]}:draining`, `${ips[2]}:ready`, `${ips[3]}:ready`],
      ],
      [
        [pod('web-3', ips[2]), pod('web-4', ips[3])],
        [`${ips[2]}:ready`, `${ips[3]}:ready`],
      ],
    ];
    // The load is flowing to both first pods before the rollout starts.
    await waitFor(() => (up.requests[ips[0]] ?? 0) > 0 && (up.requests[ips[1]] ?? 0) > 0, 5000, 10);
    for (const [pods, want] of steps) {
      put(pods);
      await waitFor(async () => JSON.stringify(await addresses()) === JSON.stringify(want), 5000);
      // Deliberate dwell: each rollout step carries the load for a while before the next one.
      await new Promise((r) => setTimeout(r, 300));
    }
    const result = await load;
    expect(result.errors).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(result.timeouts).toBe(0);
    expect(result.requests.total).toBeGreaterThan(500);
    // Every pod was replaced: only the new ones answer.
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(await (await request(`${gw.url}/`)).body.text());
    expect(seen).toEqual(new Set([ips[2], ips[3]]));
  });

  it('a terminating pod gets no new request while the one it holds completes', async () => {
    const up = await upstreamsOnOnePort(IPS.slice(0, 2));
    cleanup.push(up.close);
    const api = await KubeApiServer.start();
    cleanup.push(() => api.close());
    api.apply('shop', 'web', slice([pod('web-1', IPS[0])], up.port));
    const gw = await webGateway(api, 1);
    const inFlight = request(`${gw.url}/slow`);
    // The request is in flight once web-1 holds it (it answers /slow after 800 ms).
    await waitFor(() => (up.requests[IPS[0]] ?? 0) > 0, 5000, 10);
    api.apply('shop', 'web', slice([pod('web-1', IPS[0], 'terminating'), pod('web-2', IPS[1])], up.port));
    await waitFor(
      async () =>
        ((await (await request(`${gw.admin}/clusters/web/status`)).body.json()) as Status).endpoints.some((e) =>
          e.flags.includes('draining'),
        ),
      5000,
    );
    for (let i = 0; i < 10; i++) expect(await (await request(`${gw.url}/`)).body.text()).toBe(IPS[1]);
    const r = await inFlight;
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe(IPS[0]);
  });

  it('load balancing over discovered pods gives the numbers static endpoints with the same localities give', async () => {
    const ips = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
    const zones = ['zone-a', 'zone-a', 'zone-b', 'zone-b'];
    const up = await upstreamsOnOnePort(ips);
    cleanup.push(up.close);
    const api = await KubeApiServer.start();
    cleanup.push(() => api.close());
    api.apply(
      'shop',
      'web',
      slice(
        ips.map((ip, i) => pod(`web-${i}`, ip, 'ready', zones[i])),
        up.port,
      ),
    );
    const lb = { priorityFromLocality: true };
    const gw = await spawnGateway(
      baseConfig({
        gateway: {
          name: 'k8s',
          workers: 1,
          accessLog: { enabled: false },
          locality: { region: 'r1', zone: 'zone-a' },
          kubernetes: { kubeconfig: api.writeKubeconfig() },
        },
        routes: [
          { name: 'static', match: { path: { prefix: '/static' } }, cluster: 'static' },
          { name: 'k8s', match: { path: { prefix: '/' } }, cluster: 'k8s' },
        ],
        clusters: [
          {
            name: 'static',
            lb,
            endpoints: ips.map((ip, i) => ({
              address: `${ip}:${up.port}`,
              locality: { region: 'r1', zone: zones[i] },
            })),
          },
          { name: 'k8s', lb, discovery: { kubernetes: { namespace: 'shop', service: 'web', port: 'http' } } },
        ],
      }),
    );
    cleanup.push(() => gw.stop());
    const lbOf = async (cluster: string) =>
      ((await (await request(`${gw.admin}/clusters/${cluster}/status`)).body.json()) as { lb: unknown }).lb;
    const shares = async (path: string) => {
      const out: Record<string, number> = {};
      for (let i = 0; i < 1000; i++) {
        const ip = await (await request(`${gw.url}${path}`)).body.text();
        out[zones[ips.indexOf(ip)]] = (out[zones[ips.indexOf(ip)]] ?? 0) + 1;
      }
      return out;
    };
    // All healthy: zone-a (the gateway's zone) is P0 and takes everything.
    expect(await lbOf('k8s')).toEqual(await lbOf('static'));
    expect(await lbOf('k8s')).toMatchObject({ healthyPriorityLoad: [100, 0] });
    // One zone-a pod terminating (draining) / the same static endpoint draining: P0 at 50 % health x 1.4 = 70 %.
    api.apply(
      'shop',
      'web',
      slice(
        ips.map((ip, i) => pod(`web-${i}`, ip, i === 0 ? 'terminating' : 'ready', zones[i])),
        up.port,
      ),
    );
    const drain = await request(`${gw.admin}/clusters/static/endpoints/${ips[0]}:${up.port}/health`, {
      method: 'POST',
      body: JSON.stringify({ status: 'draining' }),
    });
    expect(drain.statusCode).toBe(200);
    await drain.body.dump();
    await waitFor(async () => JSON.stringify(await lbOf('k8s')) === JSON.stringify(await lbOf('static')), 5000);
    expect(await lbOf('k8s')).toMatchObject({ healthyPriorityLoad: [70, 30] });
    const [k8s, stat] = [await shares('/'), await shares('/static')];
    expect(Math.abs(k8s['zone-a'] - 700)).toBeLessThan(50);
    expect(Math.abs(k8s['zone-a'] - stat['zone-a'])).toBeLessThan(50);
  });

  it('the API server going away keeps the last endpoints serving; status says stale', async () => {
    const up = await upstreamsOnOnePort(IPS.slice(0, 1));
    cleanup.push(up.close);
    const api = await KubeApiServer.start();
    cleanup.push(() => api.close());
    api.apply('shop', 'web', slice([pod('web-1', IPS[0])], up.port));
    const gw = await webGateway(api, 1);
    expect(await (await request(`${gw.url}/`)).body.text()).toBe(IPS[0]);
    await api.down();
    await waitFor(
      async () =>
        ((await (await request(`${gw.admin}/clusters/web/status`)).body.json()) as Status).discovery?.stale === true,
      10_000,
    );
    for (let i = 0; i < 10; i++) expect(await (await request(`${gw.url}/`)).body.text()).toBe(IPS[0]);
    const metrics = await (await request(`${gw.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/meridian_kubernetes_watch_errors_total\{cluster="web"\} [1-9]/);
  });

  it('a hub virtual destination selects discovered pods by their Service labels: another gateway reaches them east-west', async () => {
    const TOKEN = 'fleet-token-k8s';
    const HOST = 'web.mesh.internal';
    const up = await upstreamsOnOnePort(IPS.slice(0, 2));
    cleanup.push(up.close);
    const api = await KubeApiServer.start();
    cleanup.push(() => api.close());
    api.apply('shop', 'web', slice([pod('web-1', IPS[0]), pod('web-2', IPS[1])], up.port));
    const dir = tempDir('meridian-k8s-hub-');
    const hubPort = await closedPort();
    const hubFile = join(dir, 'hub.yaml');
    writeFileSync(
      hubFile,
      stringify({
        hub: { address: `127.0.0.1:${hubPort}`, tokens: [{ name: 'fleet', token: TOKEN }] },
        virtualDestinations: [{ name: 'web', host: HOST, selector: { app: 'web' } }],
      }),
    );
    const hub = await startHub({ configFile: hubFile, stateDir: join(dir, 'hub-state') });
    cleanup.push(() => hub.stop());
    const ca = new TestCa('Mesh CA');
    const gateways = [];
    for (const [name, zone, discovered] of [
      ['k8s', 'zone-a', true],
      ['edge', 'zone-b', false],
    ] as const) {
      const cert = ca.issue({
        cn: name,
        san: ['DNS:*.mesh.internal', 'IP:127.0.0.1', `URI:spiffe://mesh.internal/gateway/${name}`],
        eku: 'serverAuth,clientAuth',
      });
      const ew = `127.0.0.1:${await closedPort()}`;
      const gw = await spawnGateway(
        baseConfig({
          gateway: {
            name,
            workers: 1,
            accessLog: { enabled: false },
            locality: { region: 'r', zone },
            ...(discovered ? { kubernetes: { kubeconfig: api.writeKubeconfig() } } : {}),
          },
          listeners: [
            { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
            {
              name: 'east-west',
              address: ew,
              protocol: 'https',
              tls: { cert: cert.cert, key: cert.key, ca: ca.cert, requireClientCert: true },
            },
          ],
          clusters: discovered
            ? [{ name: 'web', discovery: { kubernetes: { namespace: 'shop', service: 'web', port: 'http' } } }]
            : [],
          managementServer: {
            url: `http://127.0.0.1:${hubPort}`,
            token: TOKEN,
            reportInterval: '1s',
            eastWest: { address: ew, tls: { ca: ca.cert, cert: cert.cert, key: cert.key } },
          },
        }),
      );
      cleanup.push(() => gw.stop());
      gateways.push(gw);
    }
    const fleet = async () =>
      (await (
        await request(`http://127.0.0.1:${hubPort}/fleet`, { headers: { authorization: `Bearer ${TOKEN}` } })
      ).body.json()) as {
        gateways: Array<{ id: string; instances: number; inSync: boolean }>;
      };
    // The discovered pods are reported like static endpoints (two instances, labelled app: web by their Service).
    await waitFor(async () => (await fleet()).gateways.find((g) => g.id === 'k8s')?.instances === 2, 15_000, 100);
    // The edge gateway has no pod of its own: the virtual destination sends it to the k8s gateway's pods.
    const edge = gateways[1];
    await waitFor(
      async () => {
        const r = await request(`${edge.url}/`, { headers: { host: HOST } });
        return IPS.slice(0, 2).includes(await r.body.text());
      },
      15_000,
      100,
    );
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = await request(`${edge.url}/`, { headers: { host: HOST } });
      expect(r.statusCode).toBe(200);
      seen.add(await r.body.text());
    }
    expect(seen).toEqual(new Set(IPS.slice(0, 2)));
  }, 60_000);
});
