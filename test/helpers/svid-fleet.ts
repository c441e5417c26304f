import { spawnGateway, type SpawnedGateway } from './gateway.js';
import { closedPort } from './upstream.js';

/**
 * A managed gateway whose only credential to other clusters is the SVID the hub issues it: a plain
 * `main` listener, an mTLS `east-west` listener serving the SVID, and the `app-b` instances given.
 */
export async function startSvidGateway(
  name: string,
  instances: Array<{ port: number }>,
  hub: { url: string; token: string; workers?: number; forwardClientCert?: boolean },
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
    managementServer: { url: hub.url, token: hub.token, svid: true, reportInterval: '1s', eastWest: { address: ew } },
  });
}
