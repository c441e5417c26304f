import { describe, it, expect, afterEach, beforeAll, afterAll, vi } from 'vitest';
import type { V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import { validateConfig } from '../../src/config/validate.js';
import type { Config } from '../../src/config/schema/index.js';
import { KubernetesDiscovery } from '../../src/discovery/kubernetes.js';
import { watchEventChannel } from '../../src/common/kube-client.js';
import { discoveredEndpoints, kubernetesWatchErrors } from '../../src/discovery/metrics.js';
import type { EndpointSink } from '../../src/discovery/endpoint-source.js';
import { KubeApiServer } from '../helpers/kube-api.js';
import { RecordingSink, metricValue } from '../helpers/discovery.js';

type KubernetesBlock = { service: string; namespace?: string; port: number | string };

function config(kubeconfig: string, clusters: Record<string, KubernetesBlock | undefined>): Config {
  const r = validateConfig(
    {
      gateway: { kubernetes: { kubeconfig } },
      clusters: Object.entries(clusters).map(([name, kubernetes]) =>
        kubernetes ? { name, discovery: { kubernetes } } : { name, endpoints: [{ address: '127.0.0.1:9' }] },
      ),
    },
    {},
  );
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config;
}

/** An endpoint as the EndpointSlice controller writes it for a pod. */
function pod(
  name: string,
  address: string,
  options: {
    zone?: string;
    ready?: boolean;
    serving?: boolean;
    terminating?: boolean;
    forZones?: string[];
    conditions?: 'none';
  } = {},
): V1Endpoint {
  const { ready = true, serving = ready, terminating = false } = options;
  return {
    addresses: [address],
    ...(options.conditions === 'none' ? {} : { conditions: { ready, serving, terminating } }),
    nodeName: `node-${options.zone ?? 'a'}`,
    targetRef: { kind: 'Pod', namespace: 'default', name, uid: `uid-${name}` },
    ...(options.zone ? { zone: options.zone } : {}),
    ...(options.forZones ? { hints: { forZones: options.forZones.map((zone) => ({ name: zone })) } } : {}),
  };
}

function slice(
  name: string,
  endpoints: V1Endpoint[],
  options: { addressType?: string; ports?: V1EndpointSlice['ports'] } = {},
): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      generateName: `${name.replace(/-[^-]+$/, '')}-`,
      labels: { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    addressType: options.addressType ?? 'IPv4',
    ports: options.ports ?? [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints,
  };
}

const wait = { timeout: 5000, interval: 10 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fast = { debounceMs: 20, retryBaseMs: 100, retryMaxMs: 400 };

let api: KubeApiServer;
let kubeconfig: string;
/** The watch events the discovery applied (published on watchEventChannel). */
const applied: Array<{ path: string; type: string; resourceVersion?: string }> = [];
const onWatchEvent = (m: unknown) => void applied.push(m as (typeof applied)[number]);
beforeAll(async () => {
  watchEventChannel.subscribe(onWatchEvent);
  api = await KubeApiServer.start();
  kubeconfig = api.writeKubeconfig();
});
afterAll(async () => {
  watchEventChannel.unsubscribe(onWatchEvent);
  await api?.close();
});

/** Wait until the watch of `service`'s slices applied the event (of `type`) carrying `resourceVersion`. */
const watchApplied = (service: string, resourceVersion: string, type?: string) =>
  vi.waitFor(
    () =>
      expect(
        applied.some(
          (e) =>
            e.path.endsWith(`service-name%3D${service}`) &&
            e.resourceVersion === resourceVersion &&
            (type === undefined || e.type === type),
        ),
      ).toBe(true),
    wait,
  );

let discovery: KubernetesDiscovery | undefined;
afterEach(() => {
  discovery?.stop();
  discovery = undefined;
  api.expiredAs = 'event';
  api.expireEveryWatch = false;
});

/** Serve `slices` for `service`, discover `clusters`, and wait for the first list of each (initialized()). */
async function discover(
  service: string,
  slices: V1EndpointSlice[],
  clusters: Record<string, KubernetesBlock>,
): Promise<{ sink: RecordingSink; d: KubernetesDiscovery }> {
  for (const s of slices) api.apply('default', service, s);
  const sink = new RecordingSink();
  const d = (discovery = new KubernetesDiscovery(sink, fast));
  d.reconcile(config(kubeconfig, clusters));
  await d.initialized();
  return { sink, d };
}

const locality = (zone = '') => ({ region: '', zone, subzone: '' });

describe('Kubernetes EndpointSlice discovery against a stand-in API server', () => {
  it('lists the slices over TLS with the kubeconfig token and hands the ready pods as endpoints with zone and labels', async () => {
    const before = api.requests.length;
    const { sink, d } = await discover(
      'web',
      [
        slice('web-abc12', [
          pod('web-1', '10.1.0.2', { zone: 'zone-a' }),
          pod('web-0', '10.1.0.1', { zone: 'zone-b', forZones: ['zone-b', 'zone-c'] }),
        ]),
      ],
      { web: { service: 'web', port: 'http' } },
    );

    expect(sink.calls).toHaveLength(1);
    expect(sink.calls[0]).toMatchObject({ cluster: 'web', source: 'kubernetes' });
    expect(sink.calls[0].endpoints).toEqual([
      {
        address: '10.1.0.1:8080',
        weight: 1,
        priority: 0,
        locality: locality('zone-b'),
        labels: {
          'kubernetes.io/service-name': 'web',
          pod: 'web-0',
          node: 'node-zone-b',
          'meridian.dev/for-zones': 'zone-b,zone-c',
        },
      },
      {
        address: '10.1.0.2:8080',
        weight: 1,
        priority: 0,
        locality: locality('zone-a'),
        labels: { 'kubernetes.io/service-name': 'web', pod: 'web-1', node: 'node-zone-a' },
      },
    ]);
    expect(d.status('web')).toMatchObject({
      source: 'kubernetes',
      target: 'default/web:http',
      endpoints: 2,
      lastError: null,
      stale: false,
    });
    expect(Date.parse(d.status('web')!.lastSuccess!)).toBeGreaterThan(Date.now() - 5000);
    expect(await metricValue(discoveredEndpoints, { cluster: 'web', source: 'kubernetes' })).toBe(2);

    // The list, then the watch from the list's version with bookmarks, each with the token.
    await vi.waitFor(() => expect(api.requests.length).toBeGreaterThanOrEqual(before + 2), wait);
    const [list, watch] = api.requests.slice(before);
    expect(list).toMatchObject({ watch: false, authorization: `Bearer ${api.token}` });
    expect(list.url).toBe(
      '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb',
    );
    const watchQuery = new URL(watch.url, 'https://x').searchParams;
    expect(watch.authorization).toBe(`Bearer ${api.token}`);
    expect(Object.fromEntries(watchQuery)).toMatchObject({
      watch: '1',
      allowWatchBookmarks: 'true',
      resourceVersion: api.resourceVersion,
      labelSelector: 'kubernetes.io/service-name=web',
    });
  });

  it('follows a pod added to a slice (MODIFIED), a new slice (ADDED) and a deleted slice (DELETED), one hand-off per burst', async () => {
    const { sink } = await discover('follow', [slice('follow-a', [pod('f-0', '10.2.0.1')])], {
      follow: { service: 'follow', port: 8080 },
    });
    await vi.waitFor(() => expect(api.openWatches).toBeGreaterThan(0), wait);

    api.apply('default', 'follow', slice('follow-a', [pod('f-0', '10.2.0.1'), pod('f-1', '10.2.0.2')]));
    await vi.waitFor(() => expect(sink.addresses('follow').at(-1)).toEqual(['10.2.0.1:8080', '10.2.0.2:8080']), wait);

    // Two events 5 ms apart, within the 20 ms debounce: merged into one set.
    const calls = sink.calls.length;
    api.apply('default', 'follow', slice('follow-b', [pod('f-2', '10.2.0.3')]));
    await sleep(5); // deliberate pacing: the second event 5 ms after the first
    api.apply('default', 'follow', slice('follow-b', [pod('f-2', '10.2.0.3'), pod('f-3', '10.2.0.4')]));
    await vi.waitFor(
      () =>
        expect(sink.addresses('follow').at(-1)).toEqual([
          '10.2.0.1:8080',
          '10.2.0.2:8080',
          '10.2.0.3:8080',
          '10.2.0.4:8080',
        ]),
      wait,
    );
    expect(sink.calls.length).toBe(calls + 1);

    api.delete('default', 'follow-a');
    await vi.waitFor(() => expect(sink.addresses('follow').at(-1)).toEqual(['10.2.0.3:8080', '10.2.0.4:8080']), wait);

    // Another service's slices in the same namespace are not this cluster's.
    const count = sink.calls.length;
    api.apply('default', 'unrelated', slice('unrelated-a', [pod('u-0', '10.2.9.9')]));
    // A change that leaves the set equal (a new slice with no ready endpoint) is not handed.
    api.apply('default', 'follow', slice('follow-c', [pod('f-9', '10.2.0.9', { ready: false })]));
    await sleep(200); // the point: nothing is handed within this window (well past the 20 ms debounce)
    expect(sink.calls.length).toBe(count);
  });

  it('maps ready to healthy, serving+terminating to draining, and leaves out what is not serving', async () => {
    const { sink } = await discover(
      'states',
      [
        slice('states-a', [
          pod('ready', '10.3.0.1'),
          pod('nil-conditions', '10.3.0.2', { conditions: 'none' }),
          pod('terminating', '10.3.0.3', { ready: false, serving: true, terminating: true }),
          pod('terminating-not-serving', '10.3.0.4', { ready: false, serving: false, terminating: true }),
          pod('starting', '10.3.0.5', { ready: false, serving: false, terminating: false }),
        ]),
      ],
      { states: { service: 'states', port: 8080 } },
    );

    const endpoints = sink.last('states');
    expect(endpoints.map((e) => [e.address, e.health])).toEqual([
      ['10.3.0.1:8080', undefined],
      ['10.3.0.2:8080', undefined],
      ['10.3.0.3:8080', 'draining'],
    ]);

    // The draining pod goes once it stops serving.
    api.apply(
      'default',
      'states',
      slice('states-a', [
        pod('ready', '10.3.0.1'),
        pod('terminating', '10.3.0.3', { ready: false, serving: false, terminating: true }),
      ]),
    );
    await vi.waitFor(() => expect(sink.addresses('states').at(-1)).toEqual(['10.3.0.1:8080']), wait);
  });

  it('merges IPv4 and IPv6 slices and several slices, an address in two slices once (ready before draining); skips FQDN slices and slices without the port', async () => {
    const { sink } = await discover(
      'dual',
      [
        // 10.4.0.2 draining then ready, 10.4.0.4 ready then draining (a pod moving between slices mid-rollout).
        slice('dual-v4a', [
          pod('d-0', '10.4.0.1', { zone: 'z1' }),
          pod('d-1', '10.4.0.2', { ready: false, serving: true, terminating: true }),
          pod('d-3', '10.4.0.4'),
        ]),
        slice('dual-v4b', [
          pod('d-1', '10.4.0.2'),
          pod('d-2', '10.4.0.3'),
          pod('d-3', '10.4.0.4', { ready: false, serving: true, terminating: true }),
        ]),
        slice('dual-v6', [pod('d-0', 'fd00::1', { zone: 'z1' })], { addressType: 'IPv6' }),
        slice('dual-fqdn', [pod('d-9', 'app.example.com')], { addressType: 'FQDN' }),
        slice('dual-other-port', [pod('d-8', '10.4.0.8')], {
          ports: [{ name: 'metrics', port: 9090, protocol: 'TCP' }],
        }),
        slice('dual-udp', [pod('d-7', '10.4.0.7')], { ports: [{ name: 'http', port: 8080, protocol: 'UDP' }] }),
      ],
      { dual: { service: 'dual', port: 'http' } },
    );

    const endpoints = sink.last('dual');
    expect(endpoints.map((e) => e.address)).toEqual([
      '10.4.0.1:8080',
      '10.4.0.2:8080',
      '10.4.0.3:8080',
      '10.4.0.4:8080',
      '[fd00::1]:8080',
    ]);
    expect(endpoints.map((e) => e.health)).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(endpoints[4]).toMatchObject({ locality: locality('z1'), labels: { pod: 'd-0' } });
  });

  it('picks the port by name or by number, per cluster', async () => {
    const ports = [
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'grpc', port: 9000, protocol: 'TCP' },
    ];
    const { sink } = await discover('ports', [slice('ports-a', [pod('p-0', '10.5.0.1')], { ports })], {
      byName: { service: 'ports', port: 'grpc' },
      byNumber: { service: 'ports', port: 8080 },
      missing: { service: 'ports', port: 'admin' },
    });
    expect(sink.addresses('byName')).toEqual([['10.5.0.1:9000']]);
    expect(sink.addresses('byNumber')).toEqual([['10.5.0.1:8080']]);
    expect(sink.addresses('missing')).toEqual([[]]);
  });

  it('re-lists after 410 Gone (ERROR event or 410 response) and loses no update made while the watch was away', async () => {
    for (const expiredAs of ['event', 'http'] as const) {
      const service = `gone-${expiredAs}`;
      const { sink } = await discover(service, [slice(`${service}-a`, [pod('g-0', '10.6.0.1')])], {
        gone: { service, port: 8080 },
      });
      await vi.waitFor(() => expect(api.openWatches).toBeGreaterThan(0), wait);
      const lists = api.lists;

      // The watch is cut, changes are made, and the history is compacted before the gateway comes back.
      api.expiredAs = expiredAs;
      api.expire();
      api.apply('default', service, slice(`${service}-a`, [pod('g-0', '10.6.0.1'), pod('g-1', '10.6.0.2')]));
      api.expire();

      await vi.waitFor(() => expect(sink.addresses('gone').at(-1)).toEqual(['10.6.0.1:8080', '10.6.0.2:8080']), wait);
      expect(api.lists).toBeGreaterThan(lists);
      // A 410 is routine, not a failure.
      expect(discovery!.status('gone')).toMatchObject({ stale: false, lastError: null });

      // And the new watch follows on.
      api.apply('default', service, slice(`${service}-a`, [pod('g-1', '10.6.0.2')]));
      await vi.waitFor(() => expect(sink.addresses('gone').at(-1)).toEqual(['10.6.0.2:8080']), wait);
      discovery!.stop();
    }
  });

  it('backs off instead of spinning when the server answers 410 for the version it just listed, then recovers', async () => {
    const { sink, d } = await discover('spin', [slice('spin-a', [pod('v-0', '10.14.0.1')])], {
      spin: { service: 'spin', port: 8080 },
    });
    await vi.waitFor(() => expect(api.openWatches).toBe(1), wait);
    const lists = api.lists;
    const errors = (await metricValue(kubernetesWatchErrors, { cluster: 'spin' })) ?? 0;

    api.expireEveryWatch = true;
    api.dropWatches();
    await vi.waitFor(
      () =>
        expect(d.status('spin')).toMatchObject({ stale: true, lastError: expect.stringContaining('410 Gone again') }),
      wait,
    );
    const spinning = api.lists;
    await sleep(1500); // the point: the number of lists within a fixed 1.5 s window (both bounds)
    // Retries 50-100 ms, then 100-200, then 200-400 ms apart (growing, though each list between succeeds):
    // about 7 lists in 1.5 s; without the growth about 20, without the guard thousands.
    expect(api.lists - spinning).toBeGreaterThanOrEqual(3);
    expect(api.lists - spinning).toBeLessThanOrEqual(10);
    expect(api.lists).toBeGreaterThan(lists);
    expect(await metricValue(kubernetesWatchErrors, { cluster: 'spin' })).toBeGreaterThan(errors);
    expect(sink.addresses('spin')).toEqual([['10.14.0.1:8080']]);

    api.expireEveryWatch = false;
    await vi.waitFor(() => expect(d.status('spin')).toMatchObject({ stale: false, lastError: null }), wait);
    api.apply('default', 'spin', slice('spin-a', [pod('v-1', '10.14.0.2')]));
    await vi.waitFor(() => expect(sink.addresses('spin').at(-1)).toEqual(['10.14.0.2:8080']), wait);
  });

  it('a re-list during the merge window takes the pending change, and the watch after it is followed', async () => {
    api.apply('default', 'window', slice('window-a', [pod('w-0', '10.13.0.1')]));
    const sink = new RecordingSink();
    const d = (discovery = new KubernetesDiscovery(sink, { ...fast, debounceMs: 300 }));
    d.reconcile(config(kubeconfig, { window: { service: 'window', port: 8080 } }));
    await d.initialized();
    await vi.waitFor(() => expect(api.openWatches).toBe(1), wait);

    // An event opens the 300 ms window; a 410 re-lists inside it.
    api.apply('default', 'window', slice('window-a', [pod('w-0', '10.13.0.1'), pod('w-1', '10.13.0.2')]));
    await watchApplied('window', api.resourceVersion); // the event reached the watch: the window is open
    const lists = api.lists;
    api.expire();
    await vi.waitFor(() => expect(sink.addresses('window').at(-1)).toEqual(['10.13.0.1:8080', '10.13.0.2:8080']), wait);
    expect(api.lists).toBe(lists + 1);

    await vi.waitFor(() => expect(api.openWatches).toBe(1), wait);
    api.apply('default', 'window', slice('window-a', [pod('w-1', '10.13.0.2')]));
    await vi.waitFor(() => expect(sink.addresses('window').at(-1)).toEqual(['10.13.0.2:8080']), wait);
  });

  it("resumes a dropped watch from its resourceVersion (and a bookmark's) without a re-list, catching up on changes", async () => {
    const { sink, d } = await discover('drop', [slice('drop-a', [pod('x-0', '10.7.0.1')])], {
      drop: { service: 'drop', port: 8080 },
    });
    await vi.waitFor(() => expect(api.openWatches).toBe(1), wait);
    const lists = api.lists;

    // Changes to another service move the store's version; a bookmark hands it to our watch.
    api.apply('default', 'elsewhere', slice('elsewhere-a', [pod('e-0', '10.7.9.1')]));
    api.bookmark();
    const bookmarked = api.resourceVersion;
    await watchApplied('drop', bookmarked, 'BOOKMARK');

    api.dropWatches();
    api.apply('default', 'drop', slice('drop-a', [pod('x-0', '10.7.0.1'), pod('x-1', '10.7.0.2')]));
    await vi.waitFor(() => expect(sink.addresses('drop').at(-1)).toEqual(['10.7.0.1:8080', '10.7.0.2:8080']), wait);
    expect(api.lists).toBe(lists);
    const resumed = api.requests.filter((r) => r.watch).at(-1)!;
    expect(new URL(resumed.url, 'https://x').searchParams.get('resourceVersion')).toBe(bookmarked);
    await vi.waitFor(() => expect(d.status('drop')).toMatchObject({ stale: false, lastError: null }), wait);
  });

  it('keeps the last endpoints while the API server is down (stale, lastError, error metric), then recovers and catches up', async () => {
    const { sink, d } = await discover(
      'outage',
      [slice('outage-a', [pod('o-0', '10.8.0.1'), pod('o-1', '10.8.0.2')])],
      {
        outage: { service: 'outage', port: 8080 },
      },
    );
    await vi.waitFor(() => expect(api.openWatches).toBeGreaterThan(0), wait);
    const errors = (await metricValue(kubernetesWatchErrors, { cluster: 'outage' })) ?? 0;

    await api.down();
    try {
      await vi.waitFor(
        async () =>
          expect(await metricValue(kubernetesWatchErrors, { cluster: 'outage' })).toBeGreaterThanOrEqual(errors + 2),
        wait,
      );
      expect(d.status('outage')).toMatchObject({
        endpoints: 2,
        stale: true,
        lastError: expect.stringContaining('ECONNREFUSED'),
      });
      expect(sink.calls).toHaveLength(1);
      expect(await metricValue(discoveredEndpoints, { cluster: 'outage', source: 'kubernetes' })).toBe(2);
      // A pod replaced while the gateway cannot see it.
      api.apply('default', 'outage', slice('outage-a', [pod('o-1', '10.8.0.2'), pod('o-2', '10.8.0.3')]));
    } finally {
      await api.resume();
    }
    await vi.waitFor(() => expect(d.status('outage')).toMatchObject({ stale: false, lastError: null }), wait);
    await vi.waitFor(() => expect(sink.addresses('outage').at(-1)).toEqual(['10.8.0.2:8080', '10.8.0.3:8080']), wait);
  });

  it("reports a refused token with the API's Status message and initialized() still resolves", async () => {
    const sink = new RecordingSink();
    const d = (discovery = new KubernetesDiscovery(sink, fast));
    d.reconcile(config(api.writeKubeconfig('wrong-token'), { denied: { service: 'denied', port: 8080 } }));
    await d.initialized();
    expect(d.status('denied')).toMatchObject({
      endpoints: 0,
      stale: true,
      lastSuccess: null,
      lastError: '401 Unauthorized: Unauthorized',
    });
    expect(sink.calls).toHaveLength(0);
  });

  it('without gateway.kubernetes takes $KUBECONFIG outside a cluster', async () => {
    const saved = { KUBECONFIG: process.env.KUBECONFIG, KUBERNETES_SERVICE_HOST: process.env.KUBERNETES_SERVICE_HOST };
    process.env.KUBECONFIG = kubeconfig;
    delete process.env.KUBERNETES_SERVICE_HOST;
    try {
      api.apply('default', 'envcfg', slice('envcfg-a', [pod('k-0', '10.12.0.1')]));
      const sink = new RecordingSink();
      const d = (discovery = new KubernetesDiscovery(sink, fast));
      const r = validateConfig(
        { clusters: [{ name: 'envcfg', discovery: { kubernetes: { service: 'envcfg', port: 8080 } } }] },
        {},
      );
      if (!r.ok) throw new Error(JSON.stringify(r.errors));
      d.reconcile(r.config);
      await d.initialized();
      expect(sink.addresses('envcfg')).toEqual([['10.12.0.1:8080']]);
    } finally {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });

  it('reconcile stops a cluster that lost its block, restarts one whose block changed, leaves an unchanged one', async () => {
    const { sink, d } = await discover(
      'rec',
      [
        slice('rec-a', [pod('r-0', '10.9.0.1')], {
          ports: [
            { name: 'http', port: 80, protocol: 'TCP' },
            { name: 'alt', port: 81, protocol: 'TCP' },
          ],
        }),
      ],
      {
        a: { service: 'rec', port: 'http' },
        b: { service: 'rec', port: 'http' },
      },
    );
    await vi.waitFor(() => expect(api.openWatches).toBe(2), wait);
    const watchesBefore = api.requests.filter((r) => r.watch).length;
    d.reconcile(config(kubeconfig, { a: { service: 'rec', port: 'http' }, b: { service: 'rec', port: 'http' } }));
    await sleep(100); // the point: no watch is restarted within this window
    expect(api.requests.filter((r) => r.watch).length).toBe(watchesBefore);

    d.reconcile(config(kubeconfig, { a: undefined, b: { service: 'rec', port: 'alt' } }));
    expect(d.status('a')).toBeUndefined();
    expect(await metricValue(discoveredEndpoints, { cluster: 'a', source: 'kubernetes' })).toBeUndefined();
    await d.initialized();
    expect(sink.addresses('b')).toEqual([['10.9.0.1:80'], ['10.9.0.1:81']]);
    await vi.waitFor(() => expect(api.openWatches).toBe(1), wait);

    api.apply(
      'default',
      'rec',
      slice('rec-a', [pod('r-0', '10.9.0.1'), pod('r-1', '10.9.0.2')], {
        ports: [
          { name: 'http', port: 80, protocol: 'TCP' },
          { name: 'alt', port: 81, protocol: 'TCP' },
        ],
      }),
    );
    await vi.waitFor(() => expect(sink.addresses('b').at(-1)).toEqual(['10.9.0.1:81', '10.9.0.2:81']), wait);
    expect(sink.addresses('a')).toEqual([['10.9.0.1:80']]);

    d.stop();
    await vi.waitFor(() => expect(api.openWatches).toBe(0), wait);
  });

  it('hands a set the sink refused again after a pause, and reports the refusal until then', async () => {
    api.apply('default', 'refused', slice('refused-a', [pod('s-0', '10.10.0.1')]));
    const sink = new RecordingSink();
    let refusals = 1;
    const refusing: EndpointSink = {
      setEndpoints: (cluster, endpoints, source) =>
        refusals-- > 0 ? Promise.reject(new Error('workers busy')) : sink.setEndpoints(cluster, endpoints, source),
    };
    const d = (discovery = new KubernetesDiscovery(refusing, fast));
    d.reconcile(config(kubeconfig, { refused: { service: 'refused', port: 8080 } }));
    await d.initialized();
    expect(d.status('refused')!.lastError).toBe('endpoints not applied: workers busy');
    await vi.waitFor(() => expect(sink.addresses('refused')).toEqual([['10.10.0.1:8080']]), wait);
  });

  it('aborts a watch the server keeps open past its timeoutSeconds and resumes it', async () => {
    const sink = new RecordingSink();
    api.apply('default', 'silent', slice('silent-a', [pod('q-0', '10.11.0.1')]));
    const d = (discovery = new KubernetesDiscovery(sink, {
      ...fast,
      watchTimeoutSeconds: 1,
      watchSilenceGraceMs: 200,
    }));
    d.reconcile(config(kubeconfig, { silent: { service: 'silent', port: 8080 } }));
    await d.initialized();
    const watches = () => api.requests.filter((r) => r.watch && r.url.includes('silent')).length;
    await vi.waitFor(() => expect(watches()).toBe(1), wait);
    expect(
      new URL(api.requests.filter((r) => r.watch).at(-1)!.url, 'https://x').searchParams.get('timeoutSeconds'),
    ).toBe('1');
    await vi.waitFor(() => expect(watches()).toBeGreaterThanOrEqual(2), wait);
    expect(api.lists).toBeGreaterThan(0);
    expect(sink.calls).toHaveLength(1);
  });
});

describe('Kubernetes discovery config', () => {
  const existing = new URL(import.meta.url).pathname;
  const errorsOf = (input: Record<string, unknown>) => {
    const r = validateConfig(input, {});
    return r.ok ? [] : r.errors.map((e) => [e.path, e.message]);
  };

  it('defaults the namespace, accepts a port name or number', () => {
    const r = validateConfig(
      {
        clusters: [
          { name: 'a', discovery: { kubernetes: { service: 'web', port: 'http' } } },
          { name: 'b', discovery: { kubernetes: { service: 'web', namespace: 'shop', port: 8080 } } },
        ],
      },
      {},
    );
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    expect(r.config.clusters[0].discovery!.kubernetes).toEqual({ service: 'web', namespace: 'default', port: 'http' });
    expect(r.config.clusters[1].discovery!.kubernetes).toEqual({ service: 'web', namespace: 'shop', port: 8080 });
  });

  it.each([
    [
      'both dns and kubernetes',
      {
        clusters: [
          { name: 'a', discovery: { dns: { name: 'a.test', port: 80 }, kubernetes: { service: 'web', port: 80 } } },
        ],
      },
      'clusters[0].discovery',
      'set one source, not dns and kubernetes',
    ],
    [
      'kubernetes beside static endpoints',
      {
        clusters: [
          {
            name: 'a',
            endpoints: [{ address: '127.0.0.1:80' }],
            discovery: { kubernetes: { service: 'web', port: 80 } },
          },
        ],
      },
      'clusters[0].discovery',
      'discovery and endpoints are alternatives: a discovered cluster takes its endpoints from discovery only',
    ],
    [
      'no service',
      { clusters: [{ name: 'a', discovery: { kubernetes: { port: 80 } } }] },
      'clusters[0].discovery.kubernetes.service',
      'expected a Service name (DNS-1035 label)',
    ],
    [
      'a service name with a dot',
      { clusters: [{ name: 'a', discovery: { kubernetes: { service: 'web.default', port: 80 } } }] },
      'clusters[0].discovery.kubernetes.service',
      'expected a Service name (DNS-1035 label)',
    ],
    [
      'an upper-case namespace',
      { clusters: [{ name: 'a', discovery: { kubernetes: { service: 'web', namespace: 'Shop', port: 80 } } }] },
      'clusters[0].discovery.kubernetes.namespace',
      'expected a namespace name (DNS-1123 label)',
    ],
    [
      'port 0',
      { clusters: [{ name: 'a', discovery: { kubernetes: { service: 'web', port: 0 } } }] },
      'clusters[0].discovery.kubernetes.port',
      'expected a port number (1-65535) or a port name',
    ],
    [
      'a port name with a space',
      { clusters: [{ name: 'a', discovery: { kubernetes: { service: 'web', port: 'my port' } } }] },
      'clusters[0].discovery.kubernetes.port',
      'expected a port number (1-65535) or a port name',
    ],
    [
      'an unknown field',
      { clusters: [{ name: 'a', discovery: { kubernetes: { service: 'web', port: 80, selector: 'x' } } }] },
      'clusters[0].discovery.kubernetes.selector',
      'Unexpected property',
    ],
    [
      'a missing kubeconfig file',
      {
        gateway: { kubernetes: { kubeconfig: '/nonexistent/kubeconfig' } },
        clusters: [{ name: 'a', discovery: { kubernetes: { service: 'web', port: 80 } } }],
      },
      'gateway.kubernetes.kubeconfig',
      'file not found: /nonexistent/kubeconfig',
    ],
  ])('%s is refused at its path', (_name, input, path, message) => {
    expect(errorsOf(input)).toContainEqual([path, message]);
  });

  it('accepts an existing kubeconfig file', () => {
    expect(
      errorsOf({
        gateway: { kubernetes: { kubeconfig: existing } },
        clusters: [{ name: 'a', discovery: { kubernetes: { service: 'web', port: 80 } } }],
      }),
    ).toEqual([]);
  });
});
