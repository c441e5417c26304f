import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConfigError } from '../../config/validate.js';
import { writeFileAtomic } from '../../control/store/config-store.js';
import {
  generateKeyPair,
  importPrivateKeyPem,
  privateKeyPem,
  readCsr,
  signCertificate,
} from '../../common/x509-builder.js';
import { decideSvid, type SvidCaller } from './svid-policy.js';

/** The hub's `ca` section as validated (see HubCaSchema), with its durations in milliseconds. */
export interface MeshCaSettings {
  trustDomain: string;
  cert?: string;
  key?: string;
  svidTtlMs: number;
}

/** A signed SVID and what its holder needs beside it. */
export interface IssuedSvid {
  spiffeId: string;
  /** The leaf certificate (PEM); the CA signs leaves directly, so there is no intermediate to send. */
  certificate: string;
  /** The trust bundle (PEM): every CA certificate a peer's SVID may chain to. */
  bundle: string;
  /** notAfter, ISO 8601. */
  expiresAt: string;
}

/** Raised when the CA material cannot be used; `errors` point at the hub config. */
export class MeshCaError extends Error {
  constructor(readonly errors: ConfigError[]) {
    super(errors.map((e) => `${e.path}: ${e.message}`).join('\n'));
  }
}

/** Refusal of one SVID request, with the HTTP status the hub answers. */
export class SvidRefused extends Error {
  constructor(
    readonly status: 400 | 403,
    message: string,
  ) {
    super(message);
  }
}

/** Where a generated CA is kept, inside the hub's state directory (beside hub-state.json). */
export const GENERATED_CA_DIR = 'ca';
/** A generated root lives 10 years, as Istio's self-signed root: rotation (issue 21, slice 3) replaces it. */
const GENERATED_CA_LIFETIME_MS = 10 * 365 * 24 * 3_600_000;
/**
 * Leaves are valid from a little before they are signed: a peer whose clock is up to this much behind
 * the hub's accepts a brand-new SVID (SPIRE backdates by 10 s; a minute also covers a 1m TTL's renewal).
 */
const BACKDATE_MS = 60_000;

/**
 * The fleet's certificate authority: a root given as files or generated on first start (and then
 * persisted with the hub's state, so a restarted hub keeps its bundle), which signs short-lived
 * X.509 SVIDs on gateways' certificate requests.
 */
export class MeshCa {
  readonly trustDomain: string;
  readonly #certificatePem: string;
  readonly #key: CryptoKey;
  readonly #notAfter: Date;
  readonly #svidTtlMs: number;

  private constructor(settings: MeshCaSettings, certificatePem: string, key: CryptoKey) {
    this.trustDomain = settings.trustDomain;
    this.#svidTtlMs = settings.svidTtlMs;
    this.#certificatePem = certificatePem;
    this.#key = key;
    this.#notAfter = new Date(new X509Certificate(certificatePem).validTo);
  }

  /** The CA of `settings`: its files, else the one persisted in `stateDir`, else a new one persisted there. */
  static async open(settings: MeshCaSettings, stateDir: string, now = new Date()): Promise<MeshCa> {
    if (settings.cert && settings.key) {
      const [cert, key] = await Promise.all([readText(settings.cert, 'cert'), readText(settings.key, 'key')]);
      return new MeshCa(settings, cert, await checkedKeyPair(cert, key, settings.cert));
    }
    const certFile = join(stateDir, GENERATED_CA_DIR, 'mesh-ca.crt');
    const keyFile = join(stateDir, GENERATED_CA_DIR, 'mesh-ca.key');
    const persisted = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]).catch(
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return undefined;
        throw e;
      },
    );
    if (persisted)
      return new MeshCa(settings, persisted[0], await checkedKeyPair(persisted[0], persisted[1], certFile));
    const keys = await generateKeyPair();
    const cert = await signCertificate(
      {
        subjectPublicKey: keys.publicKey,
        commonName: `Meridian mesh CA ${settings.trustDomain}`,
        isCa: true,
        notBefore: new Date(now.getTime() - BACKDATE_MS),
        notAfter: new Date(now.getTime() + GENERATED_CA_LIFETIME_MS),
      },
      { key: keys.privateKey },
    );
    // The key first: a start killed in between finds no certificate and generates both again.
    await writeFileAtomic(keyFile, await privateKeyPem(keys.privateKey));
    await writeFileAtomic(certFile, cert);
    return new MeshCa(settings, cert, keys.privateKey);
  }

  /** What the hub UI shows of the CA: its own expiry and the lifetime of the SVIDs it signs. */
  get summary(): { trustDomain: string; expiresAt: string; svidTtlMs: number } {
    return { trustDomain: this.trustDomain, expiresAt: this.#notAfter.toISOString(), svidTtlMs: this.#svidTtlMs };
  }

  /** The trust bundle (PEM). One root until rotation (slice 3) adds the next one beside it. */
  get bundlePem(): string {
    return this.#certificatePem;
  }

  /** Sign the SVID a gateway asks for, or throw SvidRefused (see decideSvid for what is checked). */
  async issue(csrPem: string, caller: SvidCaller, now = new Date()): Promise<IssuedSvid> {
    const csr = await readCsr(csrPem).catch(() => {
      throw new SvidRefused(400, 'csr: expected a PEM certificate request');
    });
    const decision = decideSvid(csr, this.trustDomain, caller);
    if (!decision.ok) throw new SvidRefused(decision.status, decision.message);
    // Never past the CA's own expiry: a leaf outliving its issuer would fail to verify anyway.
    const notAfter = new Date(Math.min(now.getTime() + this.#svidTtlMs, this.#notAfter.getTime()));
    const certificate = await signCertificate(
      {
        subjectPublicKey: csr.publicKeyDer,
        commonName: caller.gatewayId,
        uris: [decision.spiffeId],
        isCa: false,
        notBefore: new Date(now.getTime() - BACKDATE_MS),
        notAfter,
      },
      { certificatePem: this.#certificatePem, key: this.#key },
    );
    return { spiffeId: decision.spiffeId, certificate, bundle: this.bundlePem, expiresAt: notAfter.toISOString() };
  }
}

async function readText(file: string, field: 'cert' | 'key'): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new MeshCaError([{ path: `hub.ca.${field}`, message: `cannot read ${file}: ${(e as Error).message}` }]);
  }
}

/** The signing key, after checking the certificate (from `file`) is a CA, the key is its key, and both are EC P-256. */
async function checkedKeyPair(certPem: string, keyPem: string, file: string): Promise<CryptoKey> {
  const fail = (message: string) => new MeshCaError([{ path: 'hub.ca', message: `${file}: ${message}` }]);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    throw fail('the CA certificate is not a PEM certificate');
  }
  if (!cert.ca) throw fail('the CA certificate is not a CA (basicConstraints CA:TRUE)');
  try {
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('mismatch');
    return await importPrivateKeyPem(keyPem);
  } catch {
    throw fail('the CA key must be the EC P-256 private key of the CA certificate');
  }
}
