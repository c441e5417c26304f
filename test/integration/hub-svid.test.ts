// The hub as the fleet's CA (issue 21, slice 1): gateways obtain X.509 SVIDs on CSRs at start and talk
// east-west over mTLS with them; the hub refuses CSRs without credentials or for someone else's
// identity, and a generated CA survives a hub restart. The hub runs in process; gateways are real processes.
import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { startHub, type RunningHub } from '../../src/hub/control-plane.js';
import { MeshCa } from '../../src/hub/ca/mesh-ca.js';
import { createCsr, generateKeyPair, privateKeyPem } from '../../src/common/x509-builder.js';
import { TestCa } from '../helpers/pki.js';
import { tempDir, waitFor, type SpawnedGateway } from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';
import { svidFiles } from '../../src/control/managed/gateway-svid.js';
import { startSvidGateway } from '../helpers/svid-fleet.js';

const TOKEN = 'fleet-token-0123';
const A_ONLY = 'c-a-only-token';
const TD = 'mesh.example';
const HOST = 'app-b.mesh.internal';
const idOf = (gw: string) => `spiffe://${TD}/cluster/${gw}/gateway/${gw}`;

let hub: RunningHub;
let hubPort: number;
let hubDir: string;
let instance: http.Server;
const gateways: Record<string, SpawnedGateway> = {};
const hubUrl = () => `http://127.0.0.1:${hubPort}`;

async function hubCall(path: string, init: { method?: string; body?: unknown; token?: string | null } = {}) {
  const token = init.token === undefined ? TOKEN : init.token;
  const r = await request(`${hubUrl()}${path}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: r.statusCode, text: await r.body.text() };
}

const startTheHub = async () => {
  hub = await startHub({ configFile: join(hubDir, 'hub.yaml'), stateDir: join(hubDir, 'state') });
};

const startGateway = (name: string, instances: Array<{ port: number }>) =>
  startSvidGateway(name, instances, { url: hubUrl(), token: TOKEN });

describe('the hub issues SVIDs that gateways use for east-west mTLS', () => {
  beforeAll(async () => {
    hubDir = tempDir('meridian-svid-');
    hubPort = await closedPort();
    writeFileSync(
      join(hubDir, 'hub.yaml'),
      stringify({
        hub: {
          address: `127.0.0.1:${hubPort}`,
          tokens: [
            { name: 'fleet', token: TOKEN },
            { name: 'c-a-only', token: A_ONLY, gateways: ['c-a'] },
          ],
          ca: { trustDomain: TD, svidTtl: '1h' },
        },
        virtualDestinations: [{ name: 'app-b', host: HOST, selector: { app: 'b' } }],
      }),
    );
    await startTheHub();
    // The instance behind c-b answers with the SPIFFE ID c-b's east-west listener verified.
    instance = http.createServer((req, res) => res.end(`c-b ${req.headers['x-spiffe-id'] ?? '-'}`));
    await new Promise<void>((r) => instance.listen(0, '127.0.0.1', r));
    const port = (instance.address() as { port: number }).port;
    // c-a has no instance of app-b: its requests for app-b cross to c-b.
    [gateways['c-a'], gateways['c-b']] = await Promise.all([startGateway('c-a', []), startGateway('c-b', [{ port }])]);
    await waitFor(
      async () => {
        const fleet = JSON.parse((await hubCall('/fleet')).text);
        return fleet.gateways.length === 2 && fleet.gateways.every((g: any) => g.connected && g.inSync);
      },
      15_000,
      100,
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.all(Object.values(gateways).map((g) => g.stop()));
    await hub?.stop();
    instance?.closeAllConnections();
    await new Promise((r) => instance?.close(r));
  });

  it('gives each gateway an SVID naming its cluster and id, with its key kept on its own disk', () => {
    for (const [name, gw] of Object.entries(gateways)) {
      const files = svidFiles(gw.stateDir);
      const leaf = new X509Certificate(readFileSync(files.cert));
      expect(leaf.subjectAltName).toBe(`URI:${idOf(name)}`);
      expect(leaf.ca).toBe(false);
      const lifetime = new Date(leaf.validTo).getTime() - Date.now();
      expect(lifetime).toBeGreaterThan(55 * 60_000);
      expect(lifetime).toBeLessThanOrEqual(3_600_000);
      expect(statSync(files.key).mode & 0o077).toBe(0);
    }
  });

  it("shows each gateway's SVID expiry in the hub's fleet metrics", async () => {
    for (const [name, gw] of Object.entries(gateways)) {
      const leaf = new X509Certificate(readFileSync(svidFiles(gw.stateDir).cert));
      const expiry = Math.floor(new Date(leaf.validTo).getTime() / 1000);
      const sample = new RegExp(`^meridian_fleet_svid_expiry_seconds\\{gateway="${name}",[^}]*\\} ${expiry}$`, 'm');
      // The summary rides on the next report (every second here).
      await waitFor(async () => sample.test((await hubCall('/fleet/metrics')).text), 10_000, 100);
    }
  });

  it('carries a request across clusters over mTLS with the SVIDs; the callee sees the caller SPIFFE ID', async () => {
    const answers = await waitFor(
      async () => {
        const r = await request(`${gateways['c-a']!.url}/`, { headers: { host: HOST } });
        const text = await r.body.text();
        return r.statusCode === 200 ? text : undefined;
      },
      15_000,
      100,
    );
    expect(answers).toBe(`c-b ${idOf('c-a')}`);
  }, 30_000);

  it('refuses a client without the bundle-signed SVID at the east-west listener', async () => {
    const ew = gateways['c-b']!.ready.listeners['east-west'];
    const bundle = readFileSync(svidFiles(gateways['c-b']!.stateDir).bundle);
    const noCert = new Agent({ connect: { ca: bundle, rejectUnauthorized: false } });
    await expect(request(`https://${ew}/`, { dispatcher: noCert, headers: { host: HOST } })).rejects.toThrow();
    await noCert.close();
  });

  it('serves the trust bundle at GET /ca/bundle, and it verifies the issued leaves', async () => {
    const r = await hubCall('/ca/bundle');
    expect(r.status).toBe(200);
    const root = new X509Certificate(r.text);
    expect(root.ca).toBe(true);
    for (const gw of Object.values(gateways)) {
      const leaf = new X509Certificate(readFileSync(svidFiles(gw.stateDir).cert));
      expect(leaf.checkIssued(root)).toBe(true);
      expect(leaf.verify(root.publicKey)).toBe(true);
    }
  });

  it('refuses a CSR without the hub token (401)', async () => {
    const csr = await createCsr(await generateKeyPair(), { commonName: 'c-a', uris: [idOf('c-a')] });
    const r = await hubCall('/v1/gateways/c-a/svid', { method: 'POST', body: { csr }, token: null });
    expect(r.status).toBe(401);
  });

  it('refuses a CSR for another gateway identity or for a key the caller does not hold (403)', async () => {
    const keys = await generateKeyPair();
    // A token confined to c-a cannot ask as c-b, nor ask as c-a for an identity naming c-b.
    const asB = await createCsr(keys, { commonName: 'c-b', uris: [idOf('c-b')] });
    expect((await hubCall('/v1/gateways/c-b/svid', { method: 'POST', body: { csr: asB }, token: A_ONLY })).status).toBe(
      403,
    );
    const forged = await hubCall('/v1/gateways/c-a/svid', { method: 'POST', body: { csr: asB }, token: A_ONLY });
    expect(forged.status).toBe(403);
    expect(JSON.parse(forged.text).message).toContain('does not name gateway "c-a"');
    const otherDomain = await createCsr(keys, {
      commonName: 'c-a',
      uris: ['spiffe://evil.example/cluster/c-a/gateway/c-a'],
    });
    expect(
      (await hubCall('/v1/gateways/c-a/svid', { method: 'POST', body: { csr: otherDomain }, token: A_ONLY })).status,
    ).toBe(403);
    // A CSR whose signature is not its key's: someone else's public key in a request they could not sign.
    const mine = await createCsr(keys, { commonName: 'c-a', uris: [idOf('c-a')] });
    const stolenKey = tamperSignature(mine);
    const r = await hubCall('/v1/gateways/c-a/svid', { method: 'POST', body: { csr: stolenKey }, token: A_ONLY });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.text).message).toContain('not signed by the key');
    // The same request, properly signed, is issued: the refusals above are about identity and key only.
    const ok = await hubCall('/v1/gateways/c-a/svid', { method: 'POST', body: { csr: mine }, token: A_ONLY });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.text).spiffeId).toBe(idOf('c-a'));
  });

  it('keeps the generated CA across a hub restart: the same bundle', async () => {
    const before = (await hubCall('/ca/bundle')).text;
    await hub.stop();
    await startTheHub();
    expect((await hubCall('/ca/bundle')).text).toBe(before);
    expect(statSync(join(hubDir, 'state', 'ca', 'mesh-ca.key')).mode & 0o077).toBe(0);
  });
});

describe('a gateway renews with its SVID as the hub client certificate', () => {
  let tlsHub: RunningHub;
  let base: string;
  let tlsHubState: string;
  const serverCa = new TestCa('Hub server CA');
  const serverCert = serverCa.issue({ cn: 'hub', san: ['IP:127.0.0.1'], eku: 'serverAuth' });
  const trustHub = readFileSync(serverCa.cert);

  beforeAll(async () => {
    const dir = tempDir('meridian-svid-tls-');
    tlsHubState = join(dir, 'state');
    const port = await closedPort();
    base = `https://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'hub.yaml'),
      stringify({
        hub: {
          address: `127.0.0.1:${port}`,
          tokens: [{ name: 'fleet', token: TOKEN }],
          tls: { cert: serverCert.cert, key: serverCert.key },
          ca: { trustDomain: TD, svidTtl: '1m' },
        },
      }),
    );
    tlsHub = await startHub({ configFile: join(dir, 'hub.yaml'), stateDir: join(dir, 'state') });
  });
  afterAll(() => tlsHub?.stop());

  const post = async (agent: Agent, path: string, body: unknown, headers: Record<string, string> = {}) => {
    const r = await request(`${base}${path}`, {
      dispatcher: agent,
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    return { status: r.statusCode, body: (await r.body.json()) as any };
  };

  it('bootstraps with the token, then renews with the SVID alone, only for the same SPIFFE ID', async () => {
    const tokenOnly = new Agent({ connect: { ca: trustHub } });
    const keys = await generateKeyPair();
    const csr = await createCsr(keys, { commonName: 'c-a', uris: [idOf('c-a')] });
    const first = await post(tokenOnly, '/v1/gateways/c-a/svid', { csr }, { authorization: `Bearer ${TOKEN}` });
    expect(first.status).toBe(200);
    // A 1m SVID: its lifetime is svidTtl from now (the minute it is backdated comes on top).
    const leaf = new X509Certificate(first.body.certificate);
    expect(new Date(leaf.validTo).getTime() - Date.now()).toBeLessThanOrEqual(60_000);
    expect(first.body.bundle).toContain('BEGIN CERTIFICATE');
    const withSvid = new Agent({
      connect: { ca: trustHub, cert: first.body.certificate, key: await privateKeyPem(keys.privateKey) },
    });
    const next = await generateKeyPair();
    const renewal = await createCsr(next, { commonName: 'c-a', uris: [idOf('c-a')] });
    const renewed = await post(withSvid, '/v1/gateways/c-a/svid', { csr: renewal });
    expect(renewed.status).toBe(200);
    expect(renewed.body.spiffeId).toBe(idOf('c-a'));
    const otherCluster = await createCsr(next, {
      commonName: 'c-a',
      uris: [`spiffe://${TD}/cluster/elsewhere/gateway/c-a`],
    });
    expect((await post(withSvid, '/v1/gateways/c-a/svid', { csr: otherCluster })).status).toBe(403);
    // The SVID speaks for its gateway only: not for another, not as an operator.
    expect((await post(withSvid, '/v1/gateways/c-b/svid', { csr: renewal })).status).toBe(403);
    const fleet = await request(`${base}/fleet`, { dispatcher: withSvid });
    expect(fleet.statusCode).toBe(403);
    await fleet.body.dump();
    await Promise.all([tokenOnly.close(), withSvid.close()]);
  });

  it('refuses an expired SVID; across a CA rotation it accepts SVIDs of the new root and, once retired, no longer the old', async () => {
    const tokenAuth = { authorization: `Bearer ${TOKEN}` };
    const tokenOnly = new Agent({ connect: { ca: trustHub } });
    const svidAgent = async (at?: Date) => {
      const keys = await generateKeyPair();
      const csr = await createCsr(keys, { commonName: 'c-a', uris: [idOf('c-a')] });
      // Signed by the hub's own CA (opened from its state directory), at a chosen time.
      const ca = await MeshCa.open({ trustDomain: TD, svidTtlMs: 60_000 }, tlsHubState);
      const issued = await ca.issue(csr, { gatewayId: 'c-a' }, at);
      const connect = { ca: trustHub, cert: issued.certificate, key: await privateKeyPem(keys.privateKey) };
      return { agent: new Agent({ connect }), csr, connect };
    };
    const expired = await svidAgent(new Date(Date.now() - 3_600_000));
    expect((await post(expired.agent, '/v1/gateways/c-a/svid', { csr: expired.csr })).status).toBe(401);
    const oldRoot = await svidAgent();
    expect((await post(oldRoot.agent, '/v1/gateways/c-a/svid', { csr: oldRoot.csr })).status).toBe(200);
    // Rotate: the next root is trusted, then signs; no gateway is connected, so nothing to wait for.
    for (const step of ['add', 'activate'])
      expect((await post(tokenOnly, '/ca/rotation', { step }, tokenAuth)).status, step).toBe(200);
    const newRoot = await svidAgent(); // opened after activation: signed by the new root
    expect((await post(newRoot.agent, '/v1/gateways/c-a/svid', { csr: newRoot.csr })).status).toBe(200);
    expect((await post(oldRoot.agent, '/v1/gateways/c-a/svid', { csr: oldRoot.csr })).status).toBe(200);
    const retired = await post(tokenOnly, '/ca/rotation', { step: 'retire', force: true }, tokenAuth);
    expect(retired.status).toBe(200);
    expect(retired.body.roots).toHaveLength(1);
    // A new connection with the old root's SVID (unexpired) is no longer authenticated; the new root's is.
    const oldAgain = new Agent({ connect: oldRoot.connect });
    const newAgain = new Agent({ connect: newRoot.connect });
    expect((await post(oldAgain, '/v1/gateways/c-a/svid', { csr: oldRoot.csr })).status).toBe(401);
    expect((await post(newAgain, '/v1/gateways/c-a/svid', { csr: newRoot.csr })).status).toBe(200);
    const agents = [tokenOnly, expired.agent, oldRoot.agent, newRoot.agent, oldAgain, newAgain];
    await Promise.all(agents.map((a) => a.close()));
  });
});

/** The CSR with the last byte of its signature flipped: it no longer verifies with its own key. */
function tamperSignature(pem: string): string {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 1] ^= 0x01;
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}-----END CERTIFICATE REQUEST-----\n`;
}
