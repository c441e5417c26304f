import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import autocannon from 'autocannon';
import { stringify } from 'yaml';
import { startHub, type RunningHub } from '../../src/hub/control-plane.js';
import { MeshCa } from '../../src/hub/ca/mesh-ca.js';
import { createCsr, generateKeyPair, privateKeyPem } from '../../src/common/x509-builder.js';
import { gatewaySpiffeId } from '../../src/common/spiffe-id.js';
import { pemCertificates, svidFiles } from '../../src/control/managed/gateway-svid.js';
import { EAST_WEST_HEADER } from '../../src/hub/protocol.js';
import { tempDir, waitFor, type SpawnedGateway } from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';
import { startTwoClusterFleet } from '../helpers/svid-fleet.js';

const TOKEN = 'fleet-token-0123';
const TD = 'mesh.example';
const HOST = 'app-b.mesh.internal';

let hub: RunningHub;
let hubUrl: string;
let stateDir: string;
let fleet: Awaited<ReturnType<typeof startTwoClusterFleet>> | undefined;
const gateways: Record<string, SpawnedGateway> = {};
const auth = { authorization: `Bearer ${TOKEN}` };

interface CaStatus {
  phase: string;
  roots: Array<{ role: string; fingerprint: string }>;
  notInSync: string[];
  holdingPrevious: string[];
}

const caStatus = async () => (await (await request(`${hubUrl}/ca`, { headers: auth })).body.json()) as CaStatus;

async function rotate(step: string): Promise<{ status: number; body: CaStatus & { message?: string } }> {
  const r = await request(`${hubUrl}/ca/rotation`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ step }),
  });
  return { status: r.statusCode, body: (await r.body.json()) as CaStatus & { message?: string } };
}

/** Take a rotation step as soon as the hub allows it (409 while gateways catch up). */
async function rotateWhenReady(step: string): Promise<CaStatus> {
  let last: Awaited<ReturnType<typeof rotate>> | undefined;
  await waitFor(async () => (last = await rotate(step)).status !== 409, 20_000, 200);
  expect(last!.status, `${step}: ${last!.body.message}`).toBe(200);
  return last!.body;
}

/** The root certificates in a gateway's bundle file, by fingerprint. */
const bundleOf = (gw: SpawnedGateway) =>
  pemCertificates(readFileSync(svidFiles(gw.stateDir).bundle, 'utf8')).map(
    (p) => new X509Certificate(p).fingerprint256,
  );

/** Whether the gateway's current SVID file was signed by the root with this fingerprint. */
function signedBy(gw: SpawnedGateway, fingerprint: string, roots: Map<string, X509Certificate>): boolean {
  const leaf = new X509Certificate(readFileSync(svidFiles(gw.stateDir).cert));
  const root = roots.get(fingerprint);
  return !!root && leaf.verify(root.publicKey);
}

/** A client of c-b's east-west listener presenting the given certificate and key (a gateway's, or forged). */
function eastWestClient(cert: string | Buffer, key: string | Buffer): Agent {
  const ca = readFileSync(svidFiles(gateways['c-b']!.stateDir).bundle);
  return new Agent({ connect: { cert, key, ca, servername: 'c-b', checkServerIdentity: () => undefined } });
}

/** One request to c-b's east-west listener: its status, or the error that ended it. */
async function eastWestCall(dispatcher: Agent, path = '/', host = HOST): Promise<number | string> {
  const ew = gateways['c-b']!.ready.listeners['east-west']!;
  try {
    const r = await request(`https://${ew}${path}`, { dispatcher, headers: { host, [EAST_WEST_HEADER]: '1' } });
    await r.body.text();
    return r.statusCode;
  } catch (e) {
    return (e as { code?: string }).code ?? (e as Error).message;
  }
}

describe('mesh CA rotation and SVID refusal', () => {
  beforeAll(async () => {
    const dir = tempDir('meridian-ca-rotation-');
    stateDir = join(dir, 'state');
    const hubPort = await closedPort();
    hubUrl = `http://127.0.0.1:${hubPort}`;
    writeFileSync(
      join(dir, 'hub.yaml'),
      stringify({
        hub: {
          address: `127.0.0.1:${hubPort}`,
          tokens: [{ name: 'fleet', token: TOKEN }],
          ca: { trustDomain: TD, svidTtl: '1h' },
        },
        virtualDestinations: [{ name: 'app-b', host: HOST, selector: { app: 'b' } }],
      }),
    );
    hub = await startHub({ configFile: join(dir, 'hub.yaml'), stateDir });
    // A local route on each gateway that RBAC opens to cluster c-a's gateways only (by SPIFFE ID).
    const local = {
      rbac: [
        { name: 'c-a-only', rules: [{ action: 'allow', principals: [{ spiffeId: `spiffe://${TD}/cluster/c-a/*` }] }] },
      ],
      routes: [
        { name: 'rbac', match: { path: { exact: '/rbac' } }, directResponse: { status: 200 }, rbac: 'c-a-only' },
      ],
    };
    fleet = await startTwoClusterFleet({ url: hubUrl, token: TOKEN, workers: 2, local }, HOST, (req, res) =>
      res.end(`c-b ${req.headers['x-spiffe-id'] ?? '-'}`),
    );
    Object.assign(gateways, fleet.gateways);
  }, 60_000);

  afterAll(async () => {
    await fleet?.stop();
    await hub?.stop();
  });

  it('rotates the root in three steps under east-west traffic: zero failed requests, zero errors', async () => {
    const a = gateways['c-a']!;
    const b = gateways['c-b']!;
    const start = await caStatus();
    expect(start.phase).toBe('stable');
    const oldRoot = start.roots[0]!.fingerprint;
    const load = autocannon({ url: `${a.url}/`, headers: { host: HOST }, connections: 8, duration: 90 });
    try {
      // Step 1: the next root joins every bundle; both gateways acknowledge the snapshot carrying it.
      const added = await rotateWhenReady('add');
      expect(added.phase).toBe('trusting-next');
      const newRoot = added.roots.find((r) => r.role === 'next')!.fingerprint;
      await waitFor(() => [a, b].every((g) => bundleOf(g).includes(newRoot) && bundleOf(g).includes(oldRoot)), 10_000);
      // Nobody holds a new-root leaf yet: retiring now is refused (wrong phase), activating waits for acks.
      expect((await rotate('retire')).status).toBe(409);
      // Step 2: the new root signs; each gateway sees its SVID is not the signer's and renews at once.
      const activated = await rotateWhenReady('activate');
      expect(activated.phase).toBe('retiring-previous');
      const roots = new Map(
        pemCertificates((await (await request(`${hubUrl}/ca/bundle`, { headers: auth })).body.text()) as string).map(
          (p) => [new X509Certificate(p).fingerprint256, new X509Certificate(p)],
        ),
      );
      await waitFor(() => [a, b].every((g) => signedBy(g, newRoot, roots)), 15_000, 100);
      // Step 3: no unexpired old-root leaf is left: the old root leaves every bundle.
      const retired = await rotateWhenReady('retire');
      expect(retired.phase).toBe('stable');
      expect(retired.roots.map((r) => r.fingerprint)).toEqual([newRoot]);
      await waitFor(() => [a, b].every((g) => bundleOf(g).join() === newRoot), 10_000);
      await new Promise((r) => setTimeout(r, 1500)); // traffic on the new root alone
    } finally {
      load.stop();
    }
    const result = await load;
    expect(result.errors).toBe(0);
    expect(result.timeouts).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(result.requests.total).toBeGreaterThan(300);
    // The callee still sees the caller's identity: the same SPIFFE ID under the new root.
    const r = await request(`${a.url}/`, { headers: { host: HOST } });
    expect(await r.body.text()).toBe(`c-b spiffe://${TD}/cluster/c-a/gateway/c-a`);
  }, 90_000);

  it('refuses an expired SVID of the mesh at the peer, and serves a valid one', async () => {
    // The hub's own (current) root signs a leaf for c-a that expired an hour ago.
    const ca = await MeshCa.open({ trustDomain: TD, svidTtlMs: 3_600_000 }, stateDir);
    const keys = await generateKeyPair();
    const spiffeId = gatewaySpiffeId({ trustDomain: TD, cluster: 'c-a', gatewayId: 'c-a' });
    const csr = await createCsr(keys, { commonName: 'c-a', uris: [spiffeId] });
    const expired = await ca.issue(csr, { gatewayId: 'c-a' }, new Date(Date.now() - 2 * 3_600_000));
    expect(new Date(expired.expiresAt).getTime()).toBeLessThan(Date.now());
    const key = await privateKeyPem(keys.privateKey);
    const stale = eastWestClient(expired.certificate, key);
    const a = svidFiles(gateways['c-a']!.stateDir);
    const valid = eastWestClient(readFileSync(a.cert), readFileSync(a.key));
    try {
      expect(await eastWestCall(valid)).toBe(200);
      expect(await eastWestCall(stale)).not.toBe(200);
      expect(typeof (await eastWestCall(stale))).toBe('string');
    } finally {
      await Promise.all([stale.close(), valid.close()]);
    }
  });

  it("lets RBAC see the peer's SPIFFE ID: c-a's SVID is allowed, another valid SVID of the mesh is not", async () => {
    const ca = await MeshCa.open({ trustDomain: TD, svidTtlMs: 3_600_000 }, stateDir);
    const keys = await generateKeyPair();
    const other = gatewaySpiffeId({ trustDomain: TD, cluster: 'c-z', gatewayId: 'c-z' });
    const issued = await ca.issue(await createCsr(keys, { commonName: 'c-z', uris: [other] }), { gatewayId: 'c-z' });
    const a = svidFiles(gateways['c-a']!.stateDir);
    const fromA = eastWestClient(readFileSync(a.cert), readFileSync(a.key));
    const fromZ = eastWestClient(issued.certificate, await privateKeyPem(keys.privateKey));
    try {
      // Not the virtual destination's host: the local route with the RBAC policy answers.
      expect(await eastWestCall(fromA, '/rbac', 'c-b.local')).toBe(200);
      expect(await eastWestCall(fromZ, '/rbac', 'c-b.local')).toBe(403);
      expect(await eastWestCall(fromZ)).toBe(200); // the handshake and other routes: a valid SVID of the mesh
    } finally {
      await Promise.all([fromA.close(), fromZ.close()]);
    }
  });

  it('refuses a revoked gateway at its peer (open connections too) and at the hub, until the revocation is lifted', async () => {
    const a = svidFiles(gateways['c-a']!.stateDir);
    const kept = eastWestClient(readFileSync(a.cert), readFileSync(a.key));
    try {
      expect(await eastWestCall(kept)).toBe(200); // a keep-alive connection, open before the revocation
      const put = await request(`${hubUrl}/revokedGateways/c-a`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'key compromise drill' }),
      });
      expect(put.statusCode).toBe(200);
      await put.body.dump();
      // The peer learns it from its snapshot: the open connection is closed, a new one refused.
      await waitFor(async () => typeof (await eastWestCall(kept)) === 'string', 10_000, 100);
      const fresh = eastWestClient(readFileSync(a.cert), readFileSync(a.key));
      expect(typeof (await eastWestCall(fresh))).toBe('string');
      await fresh.close();
      const metrics = await (await request(`${gateways['c-b']!.admin}/metrics`)).body.text();
      expect(metrics).toMatch(/meridian_tls_client_rejected_total\{[^}]*reason="revoked_gateway"[^}]*\} [1-9]/);
      // The hub refuses the revoked gateway whatever its credential: reports, SVIDs.
      const report = await request(`${hubUrl}/v1/gateways/c-a/svid`, { headers: auth });
      expect(report.statusCode).toBe(403);
      expect(((await report.body.json()) as { error: string }).error).toBe('revoked');
      // Lifted: c-b accepts c-a's SVID again.
      const del = await request(`${hubUrl}/revokedGateways/c-a`, { method: 'DELETE', headers: auth });
      expect(del.statusCode).toBe(200);
      await del.body.dump();
      await waitFor(async () => (await eastWestCall(kept)) === 200, 10_000, 100);
    } finally {
      await kept.close();
    }
  }, 30_000);
});
