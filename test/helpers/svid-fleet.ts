import http from 'node:http';
import { request } from 'undici';
import { spawnGateway, waitFor, type SpawnedGateway } from './gateway.js';
import { closedPort } from './upstream.js';

/**
 * A managed gateway whose only credential to other clusters is the SVID the hub issues it: a plain
 * `main` listener, an mTLS `east-west` listener serving the SVID, and the `app-b` instances given.
 */
export async function startSvidGateway(
  name: string,
  instances: Array<{ port: number }>,
  hub: {
    url: string;
    token: string;
    workers?: number;
    forwardClientCert?: boolean;
    failoverUrls?: string[];
    /** Local routes and RBAC policies besides what the hub manages. */
    local?: { routes?: unknown[]; rbac?: unknown[] };
  },
): Promise<SpawnedGateway> {
  const ew = `127.0.0.1:${await closedPort()}`;
  const tls = { svid: true, requireClientCert: true, ...(hub.forwardClientCert ? { forwardClientCert: true } : {}) };
  return spawnGateway({
    gateway: { name, workers: hub.workers ?? 1, accessLog: { enabled: false }, labels: { cluster: name } },
    admin: { address: '127.0.0.1:0' },
    listeners: [
      { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
      { name: 'east-west', address: ew, protocol: 'https', tls },
    ],
    clusters: [
      { name: 'app-b', endpoints: instances.map((x) => ({ address: `127.0.0.1:${x.port}`, labels: { app: 'b' } })) },
    ],
    ...(hub.local?.routes ? { routes: hub.local.routes } : {}),
    ...(hub.local?.rbac ? { rbac: hub.local.rbac } : {}),
    managementServer: {
      url: hub.url,
      ...(hub.failoverUrls ? { failoverUrls: hub.failoverUrls } : {}),
      token: hub.token,
      svid: true,
      reportInterval: '1s',
      eastWest: { address: ew },
    },
  });
}

/**
 * Two SVID gateways and one instance of app-b behind c-b (answering with `respond`), started and
 * connected: resolves once a request for `host` sent to c-a reaches c-b over mTLS with c-a's SVID.
 */
export async function startTwoClusterFleet(
  hub: Parameters<typeof startSvidGateway>[2],
  host: string,
  respond: http.RequestListener,
): Promise<{
  gateways: { 'c-a': SpawnedGateway; 'c-b': SpawnedGateway };
  instance: http.Server;
  stop(): Promise<void>;
}> {
  const instance = http.createServer(respond);
  await new Promise<void>((r) => instance.listen(0, '127.0.0.1', r));
  const port = (instance.address() as { port: number }).port;
  const started = await Promise.allSettled([
    startSvidGateway('c-a', [], hub),
    startSvidGateway('c-b', [{ port }], hub),
  ]);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    // Stop what did start (and the instance): a failed setup must not leave processes behind.
    await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    instance.close();
    throw failed.reason;
  }
  const [a, b] = started.map((r) => (r as PromiseFulfilledResult<SpawnedGateway>).value) as [
    SpawnedGateway,
    SpawnedGateway,
  ];
  await waitFor(
    async () => {
      const r = await request(`${a.url}/`, { headers: { host } });
      return r.statusCode === 200 && (await r.body.text()).startsWith('c-b spiffe://');
    },
    20_000,
    100,
  );
  return {
    gateways: { 'c-a': a, 'c-b': b },
    instance,
    stop: async () => {
      await Promise.all([a.stop(), b.stop()]);
      instance.closeAllConnections();
      await new Promise((r) => instance.close(r));
    },
  };
}
