import { describe, it, expect, afterEach } from 'vitest';
import { request } from 'undici';
import { spawnGateway, baseConfig, waitFor, type SpawnedGateway } from '../helpers/gateway.js';
import { KubeApiServer, ENDPOINT_SLICES, type KubeObject } from '../helpers/kube-api.js';
import { upstreamsOnOnePort, loadLoop } from '../helpers/loopback-upstreams.js';
import { closedPort } from '../helpers/upstream.js';
import { CertAuthority } from '../helpers/certs.js';
import { tempDir } from '../helpers/gateway.js';
import { Agent } from 'undici';
import { createServer } from 'node:http';

/**
 * The Gateway API as a config source (issue 19 slice 1), through a spawned gateway with 2 workers and
 * the stand-in API server: a GatewayClass naming our controller, a Gateway with an HTTP listener, an
 * HTTPRoute with weighted backendRefs to two Services whose pods (EndpointSlices) are HTTP servers on
 * 127.0.0.2 and 127.0.0.3; statuses are read back from what the gateway wrote.
 */
const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

const GW = 'gateway.networking.k8s.io';
const CLASSES = `/apis/${GW}/v1/gatewayclasses`;
const GATEWAYS = `/apis/${GW}/v1/gateways`;
const ROUTES = `/apis/${GW}/v1/httproutes`;
const SERVICES = '/api/v1/services';
const CONTROLLER = 'meridian.dev/gateway-controller';
const IPS = ['127.0.0.2', '127.0.0.3'];

function service(name: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'shop', labels: { app: name } },
    spec: { selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
  };
}

function slice(service: string, ip: string, port: number): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${service}-abcde`,
      namespace: 'shop',
      labels: {
        'kubernetes.io/service-name': service,
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
      },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port, protocol: 'TCP' }],
    endpoints: [
      {
        addresses: [ip],
        conditions: { ready: true, serving: true, terminating: false },
        targetRef: { kind: 'Pod', namespace: 'shop', name: `${service}-pod` },
      },
    ],
  };
}

function route(name: string, spec: Record<string, unknown>, namespace = 'shop'): KubeObject {
  return {
    apiVersion: `${GW}/v1`,
    kind: 'HTTPRoute',
    metadata: { name, namespace },
    spec: { parentRefs: [{ name: 'edge', namespace: 'shop' }], ...spec },
  };
}

type Conditions = Array<{ type: string; status: string; reason: string; observedGeneration?: number }>;
const condition = (conditions: Conditions | undefined, type: string) => conditions?.find((c) => c.type === type);
const routeParent = (api: KubeApiServer, name: string, namespace = 'shop') =>
  (
    api.get(ROUTES, namespace, name)?.status as
      | { parents?: Array<{ controllerName: string; conditions: Conditions }> }
      | undefined
  )?.parents?.find((p) => p.controllerName === CONTROLLER);

async function setUp(): Promise<{ api: KubeApiServer; gw: SpawnedGateway; url: string }> {
  const up = await upstreamsOnOnePort(IPS);
  cleanup.push(up.close);
  const api = await KubeApiServer.start();
  cleanup.push(() => api.close());
  api.put(CLASSES, {
    apiVersion: `${GW}/v1`,
    kind: 'GatewayClass',
    metadata: { name: 'meridian' },
    spec: { controllerName: CONTROLLER },
  });
  api.put(CLASSES, {
    apiVersion: `${GW}/v1`,
    kind: 'GatewayClass',
    metadata: { name: 'other' },
    spec: { controllerName: 'example.com/other' },
  });
  api.put(GATEWAYS, {
    apiVersion: `${GW}/v1`,
    kind: 'Gateway',
    metadata: { name: 'edge', namespace: 'shop' },
    spec: {
      gatewayClassName: 'meridian',
      listeners: [{ name: 'http', port: 80, protocol: 'HTTP', hostname: '*.example.com' }],
    },
  });
  for (const [i, name] of ['v1', 'v2'].entries()) {
    api.put(SERVICES, service(name));
    api.put(ENDPOINT_SLICES, slice(name, IPS[i], up.port));
  }
  api.put(
    ROUTES,
    route('shop', {
      hostnames: ['shop.example.com'],
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: '/' } }],
          backendRefs: [
            { name: 'v1', port: 80, weight: 70 },
            { name: 'v2', port: 80, weight: 30 },
          ],
        },
      ],
    }),
  );
  const port = await closedPort();
  const gw = await spawnGateway(
    baseConfig({
      gateway: {
        name: 'gwapi',
        workers: 2,
        accessLog: { enabled: false },
        kubernetes: { kubeconfig: api.writeKubeconfig() },
        gatewayApi: { controllerName: CONTROLLER, address: '127.0.0.1', portMap: { '80': port } },
      },
    }),
  );
  cleanup.push(() => gw.stop());
  return { api, gw, url: `http://127.0.0.1:${port}` };
}

const get = (url: string, path: string, host = 'shop.example.com') => request(`${url}${path}`, { headers: { host } });

describe('Gateway API source', () => {
  it("an accepted Gateway opens its listener; the HTTPRoute splits 70/30 over the Services' pods; statuses are written", async () => {
    const { api, gw, url } = await setUp();
    // Start waited for the lists, the apply and the slices: the route serves at once.
    const first = await get(url, '/');
    expect(first.statusCode).toBe(200);
    expect(IPS).toContain(await first.body.text());
    const counts: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) {
      const ip = await (await get(url, '/x')).body.text();
      counts[ip] = (counts[ip] ?? 0) + 1;
    }
    expect(Math.abs(counts[IPS[0]] - 700)).toBeLessThan(50);
    expect(Math.abs(counts[IPS[1]] - 300)).toBeLessThan(50);
    // A host outside the route's hostnames: no route.
    expect((await get(url, '/', 'other.example.com')).statusCode).toBe(404);

    await waitFor(() => routeParent(api, 'shop') !== undefined, 5000);
    expect(condition(routeParent(api, 'shop')!.conditions, 'Accepted')).toMatchObject({
      status: 'True',
      observedGeneration: 1,
    });
    expect(condition(routeParent(api, 'shop')!.conditions, 'ResolvedRefs')).toMatchObject({ status: 'True' });
    const gwStatus = api.get(GATEWAYS, 'shop', 'edge')!.status as {
      addresses: Array<{ value: string }>;
      conditions: Conditions;
      listeners: Array<{ attachedRoutes: number; conditions: Conditions }>;
    };
    expect(gwStatus.addresses[0].value).toBe('127.0.0.1');
    expect(condition(gwStatus.conditions, 'Programmed')?.status).toBe('True');
    expect(gwStatus.listeners[0].attachedRoutes).toBe(1);
    expect(
      condition((api.get(CLASSES, undefined, 'meridian')!.status as { conditions: Conditions }).conditions, 'Accepted')
        ?.status,
    ).toBe('True');
    // Another controller's class is not ours: no status written to it.
    expect(api.get(CLASSES, undefined, 'other')!.status).toBeUndefined();
    // The translated routes are versions of the config, beside the admin API's.
    const config = (await (await request(`${gw.admin}/config`)).body.json()) as {
      routes: Array<{ name: string }>;
      listeners: Array<{ name: string }>;
    };
    expect(config.routes.map((r) => r.name)).toEqual(['gwapi.shop.shop.r0.m0.p' + url.split(':').at(-1)]);
    expect(config.listeners.map((l) => l.name)).toContain(`gwapi.port.${url.split(':').at(-1)}`);
  });

  it('bad HTTPRoutes get Accepted/ResolvedRefs False with the spec reasons and change nothing live; an edit reaches both workers under load without a failed request', async () => {
    const { api, gw, url } = await setUp();
    const versionOf = async () => Number(String((await request(`${gw.admin}/config`)).headers.etag).replace(/"/g, ''));
    const before = await versionOf();
    api.put(
      ROUTES,
      route('unknown-backend', {
        hostnames: ['bad.example.com'],
        rules: [{ backendRefs: [{ name: 'nope', port: 80 }] }],
      }),
    );
    api.put(ROUTES, route('elsewhere', { rules: [{ backendRefs: [{ name: 'v1', port: 80 }] }] }, 'other-team'));
    api.put(
      ROUTES,
      route('conflicting', {
        hostnames: ['c.example.com'],
        rules: [
          {
            filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'a' } }],
            backendRefs: [{ name: 'v1', port: 80 }],
          },
        ],
      }),
    );
    await waitFor(
      () =>
        routeParent(api, 'unknown-backend') &&
        routeParent(api, 'elsewhere', 'other-team') &&
        routeParent(api, 'conflicting'),
      5000,
    );
    expect(condition(routeParent(api, 'unknown-backend')!.conditions, 'ResolvedRefs')).toMatchObject({
      status: 'False',
      reason: 'BackendNotFound',
    });
    expect(condition(routeParent(api, 'elsewhere', 'other-team')!.conditions, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'NotAllowedByListeners',
    });
    expect(condition(routeParent(api, 'conflicting')!.conditions, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'UnsupportedValue',
    });
    // The backend-less route answers 500 as the spec says; the refused ones add nothing; the good one is unchanged.
    expect((await get(url, '/', 'bad.example.com')).statusCode).toBe(500);
    expect((await get(url, '/', 'c.example.com')).statusCode).toBe(404);
    expect((await get(url, '/')).statusCode).toBe(200);
    expect(await versionOf()).toBeGreaterThan(before);

    // An edit under load: the route moves to v2 only.
    const load = loadLoop(`${url}/`, { host: 'shop.example.com' });
    cleanup.push(() => load.stop());
    await waitFor(() => load.seen.length > 0, 5000, 10); // the load is flowing before the edit
    // Two status writes meet a concurrent writer (409): the source reads the object again and retries.
    const writesBefore = api.statusWrites.length;
    api.conflictNextStatusWrites = 2;
    api.put(
      ROUTES,
      route('shop', { hostnames: ['shop.example.com'], rules: [{ backendRefs: [{ name: 'v2', port: 80 }] }] }),
    );
    await waitFor(async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 20; i++) seen.add(await (await get(url, '/')).body.text());
      return seen.size === 1 && seen.has(IPS[1]);
    }, 5000);
    await waitFor(() => condition(routeParent(api, 'shop')?.conditions, 'Accepted')?.observedGeneration === 2, 5000);
    expect(api.conflictNextStatusWrites).toBe(0);
    expect(api.statusWrites.length).toBeGreaterThan(writesBefore);
    await load.stop();
    expect(load.failures).toEqual([]);
  });

  it("an HTTPS listener serves its certificateRefs Secret by SNI; gwapi.* resources are the source's: the admin API cannot write them, and a whole-config write gets them back", async () => {
    const { api, gw, url } = await setUp();
    const ca = new CertAuthority(tempDir('meridian-gwapi-ca-'), 'gwapi-ca');
    const cert = ca.issue({ name: 'shop', san: ['DNS:shop.example.com'], eku: 'serverAuth' });
    api.put('/api/v1/secrets', {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: 'shop-tls', namespace: 'shop' },
      data: {
        'tls.crt': Buffer.from(cert.certPem).toString('base64'),
        'tls.key': Buffer.from(cert.keyPem).toString('base64'),
      },
    });
    const httpsPort = await closedPort();
    api.put(GATEWAYS, {
      apiVersion: `${GW}/v1`,
      kind: 'Gateway',
      metadata: { name: 'edge', namespace: 'shop' },
      spec: {
        gatewayClassName: 'meridian',
        listeners: [
          { name: 'http', port: 80, protocol: 'HTTP', hostname: '*.example.com' },
          {
            name: 'https',
            port: httpsPort,
            protocol: 'HTTPS',
            hostname: 'shop.example.com',
            tls: { mode: 'Terminate', certificateRefs: [{ kind: 'Secret', name: 'shop-tls' }] },
          },
        ],
      },
    });
    const tls = new Agent({ connect: { ca: ca.certPem, servername: 'shop.example.com' } });
    cleanup.push(() => tls.close());
    await waitFor(async () => {
      try {
        const r = await request(`https://127.0.0.1:${httpsPort}/`, {
          dispatcher: tls,
          headers: { host: 'shop.example.com' },
        });
        return r.statusCode === 200 && IPS.includes(await r.body.text());
      } catch {
        return false;
      }
    }, 5000);
    const gwStatus = api.get(GATEWAYS, 'shop', 'edge')!.status as {
      listeners: Array<{ name: string; attachedRoutes: number; conditions: Conditions }>;
    };
    await waitFor(() => (api.get(GATEWAYS, 'shop', 'edge')!.status as typeof gwStatus).listeners.length === 2, 5000);
    expect(
      condition((api.get(GATEWAYS, 'shop', 'edge')!.status as typeof gwStatus).listeners[1].conditions, 'Programmed')
        ?.status,
    ).toBe('True');

    // The admin API cannot write a resource the Gateway API source owns.
    const config = (await (await request(`${gw.admin}/config`)).body.json()) as { routes: Array<{ name: string }> };
    const owned = config.routes.find((r) => r.name.startsWith('gwapi.'))!.name;
    const put = await request(`${gw.admin}/routes/${owned}`, {
      method: 'PUT',
      body: JSON.stringify({ match: {}, directResponse: { status: 200 } }),
    });
    expect(put.statusCode).toBe(409);
    await put.body.dump();
    // A whole-config write without them (as SIGHUP of a file would do): the source puts them back.
    const current = (await (await request(`${gw.admin}/config`)).body.json()) as Record<
      string,
      Array<{ name: string }>
    >;
    const own = (r: { name: string }) => !r.name.startsWith('gwapi.');
    const bare = await request(`${gw.admin}/config`, {
      method: 'PUT',
      body: JSON.stringify({
        ...current,
        routes: current.routes.filter(own),
        listeners: current.listeners.filter(own),
        clusters: current.clusters.filter(own),
      }),
    });
    expect(bare.statusCode).toBe(200);
    await bare.body.dump();
    await waitFor(async () => {
      const routes = ((await (await request(`${gw.admin}/config`)).body.json()) as { routes: Array<{ name: string }> })
        .routes;
      return routes.some((r) => r.name === owned);
    }, 5000);
    await waitFor(async () => {
      try {
        return (await get(url, '/')).statusCode === 200;
      } catch {
        return false;
      }
    }, 5000);
  });

  it('an edit refused for its content (a conflicting filter, a regex the config refuses) leaves the accepted version live; the status says the new generation is refused', async () => {
    const { api, url } = await setUp();
    const serves = async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 30; i++) seen.add(await (await get(url, '/x')).body.text());
      return seen;
    };
    expect(await serves()).toEqual(new Set(IPS));
    api.put(
      ROUTES,
      route('shop', {
        hostnames: ['shop.example.com'],
        rules: [
          {
            filters: [
              { type: 'RequestRedirect', requestRedirect: { hostname: 'a' } },
              { type: 'RequestRedirect', requestRedirect: { hostname: 'b' } },
            ],
            backendRefs: [{ name: 'v2', port: 80 }],
          },
        ],
      }),
    );
    await waitFor(() => condition(routeParent(api, 'shop')?.conditions, 'Accepted')?.observedGeneration === 2, 5000);
    expect(condition(routeParent(api, 'shop')!.conditions, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'UnsupportedValue',
    });
    expect(await serves()).toEqual(new Set(IPS));
    api.put(
      ROUTES,
      route('shop', {
        hostnames: ['shop.example.com'],
        rules: [
          {
            matches: [{ path: { type: 'RegularExpression', value: '/(unclosed' } }],
            backendRefs: [{ name: 'v2', port: 80 }],
          },
        ],
      }),
    );
    await waitFor(() => condition(routeParent(api, 'shop')?.conditions, 'Accepted')?.observedGeneration === 3, 5000);
    expect(condition(routeParent(api, 'shop')!.conditions, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'UnsupportedValue',
    });
    expect(await serves()).toEqual(new Set(IPS));
    // A valid edit goes live again.
    api.put(
      ROUTES,
      route('shop', { hostnames: ['shop.example.com'], rules: [{ backendRefs: [{ name: 'v2', port: 80 }] }] }),
    );
    await waitFor(async () => (await serves()).size === 1, 5000);
    expect(await serves()).toEqual(new Set([IPS[1]]));
    expect(condition(routeParent(api, 'shop')!.conditions, 'Accepted')).toMatchObject({
      status: 'True',
      observedGeneration: 4,
    });
  });

  it('URLRewrite (ReplacePrefixMatch, ReplaceFullPath, hostname) reaches the backend rewritten; RequestMirror copies requests to its Service', async () => {
    const { api, url } = await setUp();
    // Two echo pods on their own addresses: what path and Host each request arrived with.
    const seen: Record<string, string[]> = { '127.0.0.4': [], '127.0.0.5': [] };
    const servers = await Promise.all(
      Object.keys(seen).map(
        (ip) =>
          new Promise<import('node:http').Server>((resolve) => {
            const srv = createServer((req, res) => {
              seen[ip].push(`${req.headers.host} ${req.url}`);
              res.end(`${req.headers.host} ${req.url}`);
            });
            srv.listen(0, ip, () => resolve(srv));
          }),
      ),
    );
    cleanup.push(async () => {
      for (const srv of servers) {
        srv.closeAllConnections();
        await new Promise((r) => srv.close(r));
      }
    });
    for (const [i, name] of ['echo', 'copies'].entries()) {
      api.put(SERVICES, service(name));
      api.put(ENDPOINT_SLICES, slice(name, Object.keys(seen)[i], (servers[i].address() as { port: number }).port));
    }
    api.put(
      ROUTES,
      route('rewrites', {
        hostnames: ['rw.example.com'],
        rules: [
          {
            matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
            filters: [
              {
                type: 'URLRewrite',
                urlRewrite: {
                  hostname: 'internal.example',
                  path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' },
                },
              },
            ],
            backendRefs: [{ name: 'echo', port: 80 }],
          },
          {
            matches: [{ path: { type: 'PathPrefix', value: '/strip' } }],
            filters: [
              { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } },
            ],
            backendRefs: [{ name: 'echo', port: 80 }],
          },
          {
            matches: [{ path: { type: 'Exact', value: '/full' } }],
            filters: [
              { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/replaced' } } },
              { type: 'RequestMirror', requestMirror: { backendRef: { name: 'copies', port: 80 } } },
            ],
            backendRefs: [{ name: 'echo', port: 80 }],
          },
        ],
      }),
    );
    const text = async (path: string) => (await get(url, path, 'rw.example.com')).body.text();
    await waitFor(async () => (await get(url, '/old', 'rw.example.com')).statusCode === 200, 5000);
    expect(await text('/old')).toBe('internal.example /new');
    expect(await text('/old/a/b?q=1')).toBe('internal.example /new/a/b?q=1');
    expect(await text('/strip/three')).toMatch(/ \/three$/);
    expect(await text('/full?x=y')).toMatch(/ \/replaced\?x=y$/);
    await waitFor(() => seen['127.0.0.5'].length > 0, 5000);
    expect(seen['127.0.0.5'][0]).toMatch(/ \/replaced\?x=y$/);
  });
});
