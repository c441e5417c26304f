import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import autocannon from 'autocannon';
import { stringify } from 'yaml';
import { startHub, type RunningHub } from '../../src/hub/control-plane.js';
import { tempDir, waitFor, type SpawnedGateway } from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';
import { svidFiles } from '../../src/control/managed/gateway-svid.js';
import { renewalDelayMs } from '../../src/control/managed/svid-renewer.js';
import { startTwoClusterFleet } from '../helpers/svid-fleet.js';

const TOKEN = 'fleet-token-0123';
const TD = 'mesh.example';
const HOST = 'app-b.mesh.internal';

let hub: RunningHub;
let hubPort: number;
let fleet: Awaited<ReturnType<typeof startTwoClusterFleet>> | undefined;
const gateways: Record<string, SpawnedGateway> = {};

/** The serial of the certificate a TLS listener serves (the handshake is enough; the listener then refuses us). */
function servedSerial(address: string): Promise<string> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false, servername: 'x' }, () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.destroy();
    });
    s.once('error', reject);
  });
}

const ready = async (gw: SpawnedGateway) =>
  (await (await request(`${gw.admin}/ready`)).body.json()) as { svid?: { serial: string; expiresAt: string } };

describe('SVID renewal under traffic', () => {
  beforeAll(async () => {
    const dir = tempDir('meridian-svid-renew-');
    hubPort = await closedPort();
    writeFileSync(
      join(dir, 'hub.yaml'),
      stringify({
        hub: {
          address: `127.0.0.1:${hubPort}`,
          tokens: [{ name: 'fleet', token: TOKEN }],
          ca: { trustDomain: TD, svidTtl: '1m' },
        },
        virtualDestinations: [{ name: 'app-b', host: HOST, selector: { app: 'b' } }],
      }),
    );
    hub = await startHub({ configFile: join(dir, 'hub.yaml'), stateDir: join(dir, 'state') });
    // The instance behind c-b answers with the caller's SPIFFE ID and the hash of the certificate it presented.
    fleet = await startTwoClusterFleet(
      { url: `http://127.0.0.1:${hubPort}`, token: TOKEN, workers: 2, forwardClientCert: true },
      HOST,
      (req, res) => {
        const hash = /Hash=([0-9a-f]+)/.exec(String(req.headers['x-forwarded-client-cert']))?.[1] ?? '-';
        res.end(`c-b ${req.headers['x-spiffe-id'] ?? '-'} ${hash}`);
      },
    );
    Object.assign(gateways, fleet.gateways);
  }, 60_000);

  afterAll(async () => {
    await fleet?.stop();
    await hub?.stop();
  });

  it('renews at half-life with jitter: 40-50 % of the lifetime after issue', () => {
    const svid = { issuedAt: new Date(0), expiresAt: new Date(60_000) };
    expect(renewalDelayMs(svid, 0, { random: () => 0 })).toBe(30_000);
    expect(renewalDelayMs(svid, 0, { random: () => 0.999999 })).toBeGreaterThan(24_000);
    expect(renewalDelayMs(svid, 10_000, { random: () => 0 })).toBe(20_000);
  });

  it('both gateways renew while traffic crosses between them: zero failed requests, zero errors, new certificates served and presented', async () => {
    const a = gateways['c-a']!;
    const b = gateways['c-b']!;
    const before = {
      a: (await ready(a)).svid!,
      b: (await ready(b)).svid!,
      served: await servedSerial(b.ready.listeners['east-west']!),
    };
    expect(before.served.toUpperCase(), 'served at start').toBe(before.b.serial.toUpperCase());
    // Load through c-a to c-b's east-west listener until both have renewed (24-30 s after issue) and a
    // little longer, then stop: well before either renews a second time (at least 48 s after issue).
    const load = autocannon({ url: `${a.url}/`, headers: { host: HOST }, connections: 8, duration: 60 });
    let renewed = false;
    await waitFor(
      async () => {
        const [ra, rb] = [(await ready(a)).svid!, (await ready(b)).svid!];
        return ra.serial !== before.a.serial && rb.serial !== before.b.serial;
      },
      40_000,
      250,
    ).then(() => (renewed = true));
    await new Promise((r) => setTimeout(r, 2000)); // traffic on the new certificates, on both sides
    load.stop();
    const result = await load;
    expect(renewed).toBe(true);
    expect(result.errors).toBe(0);
    expect(result.timeouts).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(result.requests.total).toBeGreaterThan(1000);
    // c-b's listener serves its new SVID; the files on disk are it; c-a presents its new one upstream.
    const after = { a: (await ready(a)).svid!, b: (await ready(b)).svid! };
    expect((await servedSerial(b.ready.listeners['east-west']!)).toUpperCase(), 'served after').toBe(
      after.b.serial.toUpperCase(),
    );
    expect(new X509Certificate(readFileSync(svidFiles(b.stateDir).cert)).serialNumber, 'b file').toBe(after.b.serial);
    expect(new Date(after.b.expiresAt).getTime()).toBeGreaterThan(new Date(before.b.expiresAt).getTime());
    // c-a's requests now present its renewed certificate (new pools), with the same identity.
    const aCert = new X509Certificate(readFileSync(svidFiles(a.stateDir).cert));
    expect(aCert.serialNumber, 'a file').toBe(after.a.serial);
    const hash = aCert.fingerprint256.replaceAll(':', '').toLowerCase();
    const r = await request(`${a.url}/`, { headers: { host: HOST } });
    expect(await r.body.text()).toBe(`c-b spiffe://${TD}/cluster/c-a/gateway/c-a ${hash}`);
    const metrics = await (await request(`${a.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/meridian_svid_expiry_timestamp_seconds \d+/);
  }, 70_000);
});
