import { describe, it, expect, afterEach } from 'vitest';
import { request } from 'undici';
import type { V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { spawnGateway, baseConfig, waitFor, tempDir } from '../helpers/gateway.js';
import { startHub } from '../../src/hub/control-plane.js';
import { closedPort } from '../helpers/upstream.js';
import { TestCa } from '../helpers/pki.js';
import { KubeApiServer } from '../helpers/kube-api.js';
import { upstreamsOnOnePort, loadLoop } from '../helpers/loopback-upstreams.js';

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
  return { addresses: [ip], conditions: { ready, serving: true, terminating: !ready }, zone, nodeName: `node-${zone}`, targetRef: { kind: 'Pod', namespace: 'shop', name } };
}

/** A slice as the EndpointSlice controller writes it: the Service's labels (here app: web) copied on. */
function slice(endpoints: V1Endpoint[], port: number): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: 'web-abcde', labels: { app: 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: 'IPv4', ports: [{ name: 'http', port, protocol: 'TCP' }], endpoints,
  };
}

interface Status { discovery?: { source: string; target: string; endpoints: number; stale: boolean }; endpoints: Array<{ address: string; health: string; flags: string[]; locality: { zone: string } }> }

describe('Kubernetes clusters in a running gateway', () => {
  it('a rolling deployment under load: the new pod takes traffic, the terminating one drains and goes, no request fails (2 workers)', async () => {
    const up = await upstreamsOnOnePort(IPS);
    cleanup.push(up.close);
    const api = await KubeApiServer.start();
    cleanup.push(() => api.close());
    api.apply('shop', 'web', slice([pod('web-1', IPS[0]), pod('web-2', IPS[1])], up.port));
    const gw = await spawnGateway(baseConfig({
      gateway: { name: 'k8s', workers: 2, accessLog: { enabled: false }, kubernetes: { kubeconfig: api.writeKubeconfig() } },
      routes: [{ name: 'web', match: { path: { prefix: '/' } }, cluster: 'web' }],
      clusters: [{ name: 'web', discovery: { kubernetes: { namespace: 'shop', service: 'web', port: 'http' } } }],
    }));
    cleanup.push(() => gw.stop());
    const status = async () => (await (await request(`${gw.admin}/clusters/web/status`)).body.json()) as Status;
    // Start waited for the first list: both pods are endpoints, with their zone as locality.
    const s0 = await status();
    expect(s0.discovery).toMatchObject({ source: 'kubernetes', endpoints: 2, stale: false });
    expect(s0.endpoints.map((e) => [e.address, e.health, e.locality.zone])).toEqual([[`${IPS[0]}:${up.port}`, 'healthy', 'zone-a'], [`${IPS[1]}:${up.port}`, 'healthy', 'zone-a']]);

    const load = loadLoop(`${gw.url}/`);
    cleanup.push(() => load.stop());
    await waitFor(() => load.since(0).size === 2, 5000);

    // Surge: web-3 comes up ready.
    api.apply('shop', 'web', slice([pod('web-1', IPS[0]), pod('web-2', IPS[1]), pod('web-3', IPS[2])], up.port));
    let mark = load.seen.length;
    await waitFor(() => load.since(mark).has(IPS[2]), 5000);

    // web-1 terminates: still serving (draining), no new requests.
    api.apply('shop', 'web', slice([pod('web-1', IPS[0], 'terminating'), pod('web-2', IPS[1]), pod('web-3', IPS[2])], up.port));
    await waitFor(async () => (await status()).endpoints.find((e) => e.address === `${IPS[0]}:${up.port}`)?.flags.includes('draining'), 5000);
    // Let requests already on it (and a worker's last picks) finish, then nothing new reaches it.
    await new Promise((r) => setTimeout(r, 300));
    mark = load.seen.length;
    await waitFor(() => load.seen.length > mark + 100, 10_000);
    expect(load.since(mark)).toEqual(new Set([IPS[1], IPS[2]]));

    // web-1 is gone.
    api.apply('shop', 'web', slice([pod('web-2', IPS[1]), pod('web-3', IPS[2])], up.port));
    await waitFor(async () => (await status()).endpoints.length === 2, 5000);
    mark = load.seen.length;
    await waitFor(() => load.seen.length > mark + 100, 10_000);
    expect(load.since(mark)).toEqual(new Set([IPS[1], IPS[2]]));

    await load.stop();
    expect(load.failures).toEqual([]);
    expect(load.seen.length).toBeGreaterThan(300);
  });

  it('the API server going away keeps the last endpoints serving; status says stale', async () => {
    const up = await upstreamsOnOnePort(IPS.slice(0, 1));
    cleanup.push(up.close);
    const api = await KubeApiServer.start();
    cleanup.push(() => api.close());
    api.apply('shop', 'web', slice([pod('web-1', IPS[0])], up.port));
    const gw = await spawnGateway(baseConfig({
      gateway: { name: 'k8s', workers: 1, accessLog: { enabled: false }, kubernetes: { kubeconfig: api.writeKubeconfig() } },
      routes: [{ name: 'web', match: { path: { prefix: '/' } }, cluster: 'web' }],
      clusters: [{ name: 'web', discovery: { kubernetes: { namespace: 'shop', service: 'web', port: 'http' } } }],
    }));
    cleanup.push(() => gw.stop());
    expect(await (await request(`${gw.url}/`)).body.text()).toBe(IPS[0]);
    await api.down();
    await waitFor(async () => ((await (await request(`${gw.admin}/clusters/web/status`)).body.json()) as Status).discovery?.stale === true, 10_000);
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
    writeFileSync(hubFile, stringify({
      hub: { address: `127.0.0.1:${hubPort}`, tokens: [{ name: 'fleet', token: TOKEN }] },
      virtualDestinations: [{ name: 'web', host: HOST, selector: { app: 'web' } }],
    }));
    const hub = await startHub({ configFile: hubFile, stateDir: join(dir, 'hub-state') });
    cleanup.push(() => hub.stop());
    const ca = new TestCa('Mesh CA');
    const gateways = [];
    for (const [name, zone, discovered] of [['k8s', 'zone-a', true], ['edge', 'zone-b', false]] as const) {
      const cert = ca.issue({ cn: name, san: ['DNS:*.mesh.internal', 'IP:127.0.0.1', `URI:spiffe://mesh.internal/gateway/${name}`], eku: 'serverAuth,clientAuth' });
      const ew = `127.0.0.1:${await closedPort()}`;
      const gw = await spawnGateway(baseConfig({
        gateway: { name, workers: 1, accessLog: { enabled: false }, locality: { region: 'r', zone }, ...(discovered ? { kubernetes: { kubeconfig: api.writeKubeconfig() } } : {}) },
        listeners: [
          { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
          { name: 'east-west', address: ew, protocol: 'https', tls: { cert: cert.cert, key: cert.key, ca: ca.cert, requireClientCert: true } },
        ],
        clusters: discovered ? [{ name: 'web', discovery: { kubernetes: { namespace: 'shop', service: 'web', port: 'http' } } }] : [],
        managementServer: { url: `http://127.0.0.1:${hubPort}`, token: TOKEN, reportInterval: '1s', eastWest: { address: ew, tls: { ca: ca.cert, cert: cert.cert, key: cert.key } } },
      }));
      cleanup.push(() => gw.stop());
      gateways.push(gw);
    }
    const fleet = async () => (await (await request(`http://127.0.0.1:${hubPort}/fleet`, { headers: { authorization: `Bearer ${TOKEN}` } })).body.json()) as { gateways: Array<{ id: string; instances: number; inSync: boolean }> };
    // The discovered pods are reported like static endpoints (two instances, labelled app: web by their Service).
    await waitFor(async () => (await fleet()).gateways.find((g) => g.id === 'k8s')?.instances === 2, 15_000, 100);
    // The edge gateway has no pod of its own: the virtual destination sends it to the k8s gateway's pods.
    const edge = gateways[1];
    await waitFor(async () => {
      const r = await request(`${edge.url}/`, { headers: { host: HOST } });
      return IPS.slice(0, 2).includes(await r.body.text());
    }, 15_000, 100);
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = await request(`${edge.url}/`, { headers: { host: HOST } });
      expect(r.statusCode).toBe(200);
      seen.add(await r.body.text());
    }
    expect(seen).toEqual(new Set(IPS.slice(0, 2)));
  }, 60_000);
});
