import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createCsr, generateKeyPair, privateKeyPem, type CsrContents } from '../../../src/common/x509-builder.js';
import { MeshCa, MeshCaError, RotationRefused, SvidRefused } from '../../../src/hub/ca/mesh-ca.js';
import { pemCertificates } from '../../../src/control/managed/gateway-svid.js';
import { gatewaySpiffeId, parseGatewaySpiffeId } from '../../../src/common/spiffe-id.js';
import { decideSvid } from '../../../src/hub/ca/svid-policy.js';
import { validateHubConfig } from '../../../src/hub/config.js';
import { tempDir } from '../../helpers/gateway.js';

const TD = 'mesh.example';
const GW1 = 'spiffe://mesh.example/cluster/c-a/gateway/gw-1';
const HOUR = 3_600_000;
const settings = { trustDomain: TD, svidTtlMs: HOUR };

describe('gateway SPIFFE IDs', () => {
  it('name the cluster, then the gateway, and parse back', () => {
    const id = { trustDomain: TD, cluster: 'c-a', gatewayId: 'gw-1' };
    expect(gatewaySpiffeId(id)).toBe(GW1);
    expect(parseGatewaySpiffeId(GW1)).toEqual(id);
  });

  it.each([
    'spiffe://mesh.example/gateway/gw-1',
    'spiffe://Mesh.Example/cluster/c-a/gateway/gw-1',
    'spiffe://mesh.example/cluster/../gateway/gw-1',
    'spiffe://mesh.example/cluster/c-a/gateway/gw-1/extra',
    'https://mesh.example/cluster/c-a/gateway/gw-1',
  ])('reject %s', (uri) => expect(parseGatewaySpiffeId(uri)).toBeUndefined());
});

describe('which SVID requests are signed (decideSvid)', () => {
  const csr = (over: Partial<CsrContents> = {}): CsrContents => ({
    signatureValid: true,
    uris: [GW1],
    publicKeyDer: Buffer.alloc(0),
    isEcP256: true,
    ...over,
  });
  it.each<[string, Partial<CsrContents>, { gatewayId: string; callerSpiffeId?: string }, number | string]>([
    ['its own identity', {}, { gatewayId: 'gw-1' }, GW1],
    ['a renewal with the same SVID', {}, { gatewayId: 'gw-1', callerSpiffeId: GW1 }, GW1],
    ['a key it did not sign with', { signatureValid: false }, { gatewayId: 'gw-1' }, 403],
    ['another gateway', {}, { gatewayId: 'gw-2' }, 403],
    ['another trust domain', { uris: ['spiffe://other.example/cluster/c-a/gateway/gw-1'] }, { gatewayId: 'gw-1' }, 403],
    [
      'another cluster than its SVID',
      { uris: ['spiffe://mesh.example/cluster/c-b/gateway/gw-1'] },
      { gatewayId: 'gw-1', callerSpiffeId: GW1 },
      403,
    ],
    ['two identities', { uris: [GW1, GW1] }, { gatewayId: 'gw-1' }, 400],
    ['no identity', { uris: [] }, { gatewayId: 'gw-1' }, 400],
    ['a non-gateway SPIFFE ID', { uris: ['spiffe://mesh.example/ns/x'] }, { gatewayId: 'gw-1' }, 400],
    ['an RSA key', { isEcP256: false }, { gatewayId: 'gw-1' }, 400],
  ])('%s', (_name, over, caller, expected) => {
    const d = decideSvid(csr(over), TD, caller);
    if (typeof expected === 'string') expect(d).toEqual({ ok: true, spiffeId: expected });
    else expect(d).toMatchObject({ ok: false, status: expected });
  });
});

describe('MeshCa', () => {
  it('generates a CA on first open, persists it, and opens the same one again', async () => {
    const dir = tempDir('meridian-ca-');
    const first = await MeshCa.open(settings, dir);
    const again = await MeshCa.open(settings, dir);
    expect(again.bundlePem).toBe(first.bundlePem);
    const root = new X509Certificate(first.bundlePem);
    expect(root.ca).toBe(true);
    expect(root.keyUsage).toBeUndefined(); // Node lists extended key usage only: a CA has none
  });

  it('signs a leaf for the CSR key with the SPIFFE ID, both TLS roles, backdated a minute, living svidTtl', async () => {
    const ca = await MeshCa.open(settings, tempDir('meridian-ca-'));
    const keys = await generateKeyPair();
    const now = new Date('2030-01-01T00:00:00Z');
    const issued = await ca.issue(
      await createCsr(keys, { commonName: 'gw-1', uris: [GW1] }),
      { gatewayId: 'gw-1' },
      now,
    );
    const leaf = new X509Certificate(issued.certificate);
    expect(leaf.subjectAltName).toBe(`URI:${GW1}`);
    expect(leaf.ca).toBe(false);
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(leaf.verify(new X509Certificate(ca.bundlePem).publicKey)).toBe(true);
    expect(new Date(leaf.validFrom).getTime()).toBe(now.getTime() - 60_000);
    expect(new Date(leaf.validTo).getTime()).toBe(now.getTime() + HOUR);
    expect(issued.expiresAt).toBe('2030-01-01T01:00:00.000Z');
    // The certificate carries the requester's key: their private key is the certificate's.
    const { createPrivateKey } = await import('node:crypto');
    expect(leaf.checkPrivateKey(createPrivateKey(await privateKeyPem(keys.privateKey)))).toBe(true);
  });

  it('never issues a leaf that outlives the CA', async () => {
    const ca = await MeshCa.open({ ...settings, svidTtlMs: 100 * 365 * 24 * HOUR }, tempDir('meridian-ca-'));
    const csr = await createCsr(await generateKeyPair(), { commonName: 'gw-1', uris: [GW1] });
    const leaf = new X509Certificate((await ca.issue(csr, { gatewayId: 'gw-1' })).certificate);
    expect(leaf.validTo).toBe(new X509Certificate(ca.bundlePem).validTo);
  });

  it('refuses what is not a CSR (400) and a CSR for another gateway (403)', async () => {
    const ca = await MeshCa.open(settings, tempDir('meridian-ca-'));
    await expect(ca.issue('not a csr', { gatewayId: 'gw-1' })).rejects.toMatchObject({ status: 400 });
    const csr = await createCsr(await generateKeyPair(), { commonName: 'gw-1', uris: [GW1] });
    const refused = ca.issue(csr, { gatewayId: 'gw-2' });
    await expect(refused).rejects.toBeInstanceOf(SvidRefused);
    await expect(refused).rejects.toMatchObject({ status: 403 });
  });

  it('uses a CA given as files, and refuses a leaf or a key that is not the certificate key', async () => {
    const dir = tempDir('meridian-ca-');
    const generated = await MeshCa.open(settings, join(dir, 'gen'));
    const files = { cert: join(dir, 'gen', 'ca', 'mesh-ca.crt'), key: join(dir, 'gen', 'ca', 'mesh-ca.key') };
    const given = await MeshCa.open({ ...settings, ...files }, join(dir, 'other'));
    expect(given.bundlePem).toBe(generated.bundlePem);
    const otherKey = join(dir, 'other.key');
    writeFileSync(otherKey, await privateKeyPem((await generateKeyPair()).privateKey));
    await expect(MeshCa.open({ ...settings, cert: files.cert, key: otherKey }, dir)).rejects.toBeInstanceOf(
      MeshCaError,
    );
    const leafFile = join(dir, 'leaf.crt');
    const csr = await createCsr(await generateKeyPair(), { commonName: 'gw-1', uris: [GW1] });
    writeFileSync(leafFile, (await generated.issue(csr, { gatewayId: 'gw-1' })).certificate);
    await expect(MeshCa.open({ ...settings, cert: leafFile, key: files.key }, dir)).rejects.toThrow(/not a CA/);
  });
});

describe('MeshCa rotation', () => {
  const fingerprints = (ca: MeshCa) => pemCertificates(ca.bundlePem).map((p) => new X509Certificate(p).fingerprint256);
  const leafOf = async (ca: MeshCa) =>
    new X509Certificate(
      (
        await ca.issue(await createCsr(await generateKeyPair(), { commonName: 'gw-1', uris: [GW1] }), {
          gatewayId: 'gw-1',
        })
      ).certificate,
    );

  it('adds the next root, signs with it, retires the old one; each step survives a reopen', async () => {
    const dir = tempDir('meridian-ca-');
    const ca = await MeshCa.open(settings, dir);
    const oldRoot = ca.signerFingerprint;
    const oldLeaf = await leafOf(ca);

    await ca.addNextRoot();
    expect(ca.phase).toBe('trusting-next');
    const newRoot = ca.summary.roots.find((r) => r.role === 'next')!.fingerprint;
    expect(fingerprints(ca)).toEqual([oldRoot, newRoot]);
    expect(ca.signerFingerprint).toBe(oldRoot); // trusted first, signing later
    expect((await MeshCa.open(settings, dir)).bundlePem).toBe(ca.bundlePem);

    await ca.activateNextRoot();
    expect(ca.phase).toBe('retiring-previous');
    expect(ca.signerFingerprint).toBe(newRoot);
    expect(ca.previousFingerprint).toBe(oldRoot);
    expect(fingerprints(ca)).toEqual([newRoot, oldRoot]);
    const newLeaf = await leafOf(ca);
    const [rootNew, rootOld] = pemCertificates(ca.bundlePem).map((p) => new X509Certificate(p));
    expect(newLeaf.verify(rootNew!.publicKey)).toBe(true);
    expect(newLeaf.verify(rootOld!.publicKey)).toBe(false);
    expect(oldLeaf.verify(rootOld!.publicKey)).toBe(true); // still trusted until retired
    const reopened = await MeshCa.open(settings, dir);
    expect([reopened.phase, reopened.signerFingerprint, reopened.bundlePem]).toEqual([
      'retiring-previous',
      newRoot,
      ca.bundlePem,
    ]);

    await ca.retirePreviousRoot();
    expect(ca.phase).toBe('stable');
    expect(fingerprints(ca)).toEqual([newRoot]);
    expect(fingerprints(await MeshCa.open(settings, dir))).toEqual([newRoot]);
  });

  it('refuses a step out of order, and rotation of a CA given as files', async () => {
    const dir = tempDir('meridian-ca-');
    const ca = await MeshCa.open(settings, join(dir, 'gen'));
    await expect(ca.activateNextRoot()).rejects.toThrow(/activate needs trusting-next/);
    await expect(ca.retirePreviousRoot()).rejects.toBeInstanceOf(RotationRefused);
    await ca.addNextRoot();
    await expect(ca.addNextRoot()).rejects.toThrow(/in rotation phase trusting-next/);
    const files = { cert: join(dir, 'gen', 'ca', 'mesh-ca.crt'), key: join(dir, 'gen', 'ca', 'mesh-ca.key') };
    const given = await MeshCa.open({ ...settings, ...files }, join(dir, 'other'));
    await expect(given.addNextRoot()).rejects.toThrow(/given as files/);
  });
});

describe('hub.ca config', () => {
  const hubWith = (ca: unknown) => validateHubConfig({ hub: { ca } }, {});
  it('defaults svidTtl to 1h and accepts 1m', () => {
    const v = hubWith({ trustDomain: TD });
    expect(v.ok && v.config.hub.ca?.svidTtl).toBe('1h');
    expect(hubWith({ trustDomain: TD, svidTtl: '1m' }).ok).toBe(true);
  });
  it.each([
    [{ trustDomain: TD, svidTtl: '30s' }, 'hub.ca.svidTtl'],
    [{ trustDomain: TD, cert: 'ca.crt' }, 'hub.ca'],
    [{ trustDomain: 'Mesh Example' }, 'hub.ca.trustDomain'],
  ])('refuses %j at %s', (ca, path) => {
    const v = hubWith(ca);
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.errors.map((e) => e.path)).toContain(path);
  });
});

describe('certificate serial numbers', () => {
  it('every issued certificate parses: 300 leaves, each serial a positive DER integer without padding', async () => {
    const ca = await MeshCa.open(settings, tempDir('meridian-ca-'));
    const keys = await generateKeyPair();
    const csr = await createCsr(keys, { commonName: 'gw-1', uris: [GW1] });
    for (let i = 0; i < 300; i++) {
      const leaf = new X509Certificate((await ca.issue(csr, { gatewayId: 'gw-1' })).certificate);
      expect(Number.parseInt(leaf.serialNumber.slice(0, 2), 16)).toBeGreaterThanOrEqual(0x40);
    }
  });
});
