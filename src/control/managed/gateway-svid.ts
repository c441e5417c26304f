import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { backoffDelay } from '../../common/backoff.js';
import type { Rng } from '../../common/clock.js';
import { createCsr, generateKeyPair, privateKeyPem } from '../../common/x509-builder.js';
import { gatewaySpiffeId, parseGatewaySpiffeId } from '../../common/spiffe-id.js';
import type { IssuedSvid } from '../../hub/ca/mesh-ca.js';
import { logger } from '../../observability/logger.js';
import { writeFileAtomic } from '../store/config-store.js';
import { HubCallError, type HubConnection } from './hub-connection.js';

const log = logger.child({ component: 'svid' });
const BOOTSTRAP_ATTEMPTS = 5;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 2000;

/** Where a gateway keeps its SVID: files, so listeners and upstream pools read it like any certificate. */
export interface SvidFiles {
  /** The leaf certificate (PEM). */
  cert: string;
  /** Its private key (PKCS#8 PEM, mode 0600): made here, never sent anywhere. */
  key: string;
  /** The trust bundle (PEM): the CA certificates peers' SVIDs chain to. */
  bundle: string;
}

/** The SVID files of a gateway whose state lives in `stateDir` (`<stateDir>/svid/`). */
export function svidFiles(stateDir: string): SvidFiles {
  const dir = join(stateDir, 'svid');
  return { cert: join(dir, 'svid.crt'), key: join(dir, 'svid.key'), bundle: join(dir, 'bundle.crt') };
}

/** The SVID a gateway holds: its identity, where its files are, and its validity. */
export interface GatewaySvid {
  spiffeId: string;
  trustDomain: string;
  /** When this gateway received it (its notBefore is backdated for clock skew); renewal counts from here. */
  issuedAt: Date;
  expiresAt: Date;
  /** The certificate's serial number (hex): with the bundle's hash, names this SVID's upstream copy. */
  serial: string;
  /** The files listeners serve (rewritten in place on renewal; listeners reload them). */
  files: SvidFiles;
  /**
   * A copy named by the serial, for upstream pools: a pool reads its files once, when it is made, and
   * is keyed by their paths, so a renewed SVID under new paths gets new pools (the old ones finish
   * their requests and close) instead of pools that would go on presenting the old certificate.
   */
  upstream: SvidFiles;
}

/** What the hub answers to GET /v1/gateways/{id}/svid: the trust domain it issues in. */
export interface SvidProfile {
  trustDomain: string;
}

/**
 * Ask the hub for an SVID: learn its trust domain, make an EC P-256 key pair here, send a CSR for
 * `spiffe://<trust-domain>/cluster/<cluster>/gateway/<id>` and write key, certificate and bundle.
 */
export async function obtainSvid(hub: HubConnection, cluster: string, files: SvidFiles): Promise<GatewaySvid> {
  const { trustDomain } = (await hub.call('svid')) as SvidProfile;
  const keys = await generateKeyPair();
  const spiffeId = gatewaySpiffeId({ trustDomain, cluster, gatewayId: hub.id });
  const csr = await createCsr(keys, { commonName: hub.id, uris: [spiffeId] });
  const issued = (await hub.call('svid', JSON.stringify({ csr }))) as IssuedSvid;
  // Key first: a gateway killed in between finds a certificate that is not its key's and asks again.
  const key = await privateKeyPem(keys.privateKey);
  await writeFileAtomic(files.key, key);
  await writeFileAtomic(files.cert, issued.certificate);
  await writeFileAtomic(files.bundle, issued.bundle);
  // Received now: the certificate's notBefore is backdated (clock skew), so it would understate the age.
  return describe(new X509Certificate(issued.certificate), {
    trustDomain,
    files,
    spiffeId: issued.spiffeId,
    issuedAt: new Date(),
  });
}

/** The SVID of a certificate, with its upstream copy written (and copies older than the previous one removed). */
async function describe(
  x509: X509Certificate,
  at: { trustDomain: string; files: SvidFiles; spiffeId: string; issuedAt: Date },
): Promise<GatewaySvid> {
  const { trustDomain, files, spiffeId, issuedAt } = at;
  const upstream = await writeUpstreamCopy(files, x509.serialNumber);
  return {
    spiffeId,
    trustDomain,
    issuedAt,
    expiresAt: new Date(x509.validTo),
    serial: x509.serialNumber,
    files,
    upstream,
  };
}

/**
 * `<svid dir>/upstream/<serial>-<bundle hash>.{crt,key,bundle.crt}`: a new SVID or a new bundle (a CA
 * rotation step) is a new copy, so new pools. Keeps this copy and the one before it (pools still draining).
 */
async function writeUpstreamCopy(files: SvidFiles, serial: string): Promise<SvidFiles> {
  const dir = join(dirname(files.cert), 'upstream');
  const [cert, key, bundle] = await Promise.all([files.cert, files.key, files.bundle].map((f) => readFile(f, 'utf8')));
  const name = `${serial}-${createHash('sha256').update(bundle).digest('hex').slice(0, 12)}`;
  const copy = {
    cert: join(dir, `${name}.crt`),
    key: join(dir, `${name}.key`),
    bundle: join(dir, `${name}.bundle.crt`),
  };
  await writeFileAtomic(copy.key, key);
  await writeFileAtomic(copy.cert, cert);
  await writeFileAtomic(copy.bundle, bundle);
  const names = [...new Set((await readdir(dir)).map((f) => f.split('.')[0]))];
  const stale = names.filter((n) => n !== name && n !== previousCopy.get(dir));
  await Promise.all(
    stale.flatMap((n) => ['crt', 'key', 'bundle.crt'].map((ext) => rm(join(dir, `${n}.${ext}`), { force: true }))),
  );
  previousCopy.set(dir, name);
  return copy;
}

/** The name of the last copy written per directory: the one pools made before a renewal still read. */
const previousCopy = new Map<string, string>();

/**
 * The SVID with a new trust bundle (a CA rotation step): the bundle file rewritten for listeners, and
 * a new upstream copy for east-west pools. The certificate and key are unchanged.
 */
export async function withBundle(svid: GatewaySvid, bundle: string): Promise<GatewaySvid> {
  await writeFileAtomic(svid.files.bundle, bundle);
  return { ...svid, upstream: await writeUpstreamCopy(svid.files, svid.serial) };
}

/** Whether the SVID's certificate was signed by the root with SHA-256 fingerprint `signer` in its bundle. */
export async function signedBy(svid: GatewaySvid, signer: string): Promise<boolean> {
  const [cert, bundle] = await Promise.all([readFile(svid.files.cert, 'utf8'), readFile(svid.files.bundle, 'utf8')]);
  const root = pemCertificates(bundle)
    .map((pem) => new X509Certificate(pem))
    .find((r) => r.fingerprint256 === signer);
  return !!root && new X509Certificate(cert).verify(root.publicKey);
}

/** The certificates of a PEM bundle, each as its own PEM block. */
export function pemCertificates(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** The SVID persisted by an earlier start, when its files are all there and the key is the certificate's. */
export async function readPersistedSvid(files: SvidFiles): Promise<GatewaySvid | undefined> {
  try {
    const [cert, key] = await Promise.all([readFile(files.cert, 'utf8'), readFile(files.key, 'utf8')]);
    await readFile(files.bundle);
    const x509 = new X509Certificate(cert);
    if (!x509.checkPrivateKey(createPrivateKey(key))) return undefined;
    const spiffeId = x509.subjectAltName?.match(/URI:(spiffe:\/\/[^,\s]+)/)?.[1];
    const id = spiffeId && parseGatewaySpiffeId(spiffeId);
    if (!spiffeId || !id) return undefined;
    // When it was received is not known: its notBefore, which is earlier (renewal comes sooner, not later).
    return await describe(x509, { trustDomain: id.trustDomain, files, spiffeId, issuedAt: new Date(x509.validFrom) });
  } catch {
    return undefined;
  }
}

/**
 * The SVID a gateway starts with: a new one from the hub (a few attempts with backoff while it cannot
 * be reached), else the one persisted by an earlier start (static stability: the hub may be away),
 * else an error: listeners with `tls.svid` cannot serve without one. A refusal is final at once.
 */
export async function bootstrapSvid(
  hub: HubConnection,
  cluster: string,
  files: SvidFiles,
  rng: Rng,
): Promise<GatewaySvid> {
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= BOOTSTRAP_ATTEMPTS; attempt++) {
    try {
      const svid = await obtainSvid(hub, cluster, files);
      log.info({ spiffeId: svid.spiffeId, expiresAt: svid.expiresAt }, 'obtained an SVID from the management server');
      return svid;
    } catch (e) {
      lastError = e as Error;
      if (e instanceof HubCallError && e.status !== 503) break;
      await new Promise((r) => setTimeout(r, backoffDelay(attempt, BACKOFF_BASE_MS, BACKOFF_MAX_MS, rng)));
    }
  }
  const persisted = await readPersistedSvid(files);
  if (!persisted) throw new Error(`cannot obtain an SVID from ${hub.hubUrl}: ${lastError?.message}`);
  log.warn(
    { err: lastError?.message, spiffeId: persisted.spiffeId, expiresAt: persisted.expiresAt },
    'cannot obtain an SVID; serving with the one from the previous start',
  );
  return persisted;
}
