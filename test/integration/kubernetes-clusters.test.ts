import { describe, it, expect, afterEach } from 'vitest';
import { request } from 'undici';
import type { V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import { spawnGateway, baseConfig, waitFor } from '../helpers/gateway.js';
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

function slice(endpoints: V1Endpoint[], port: number): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: 'web-abcde', labels: { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
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
});
