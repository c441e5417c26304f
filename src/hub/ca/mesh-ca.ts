import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConfigError } from '../../config/validate.js';
import {
  generateKeyPair,
  importPrivateKeyPem,
  privateKeyPem,
  readCsr,
  signCertificate,
} from '../../common/x509-builder.js';
import { decideSvid, type SvidCaller } from './svid-policy.js';
import { type CaState, type CaStateStore, FIRST_ROOT, FileCaStore, type RootMaterial } from './ca-store.js';

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
  /** SHA-256 fingerprint of the root that signed it. */
  issuer: string;
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
/** A generated root lives 10 years, as Istio's self-signed root: rotation replaces it sooner. */
const GENERATED_CA_LIFETIME_MS = 10 * 365 * 24 * 3_600_000;
/**
 * Leaves are valid from a little before they are signed: a peer whose clock is up to this much behind
 * the hub's accepts a brand-new SVID (SPIRE backdates by 10 s; a minute also covers a 1m TTL's renewal).
 */
const BACKDATE_MS = 60_000;
/** A rotation step that cannot be taken now; the hub answers 409 with the message. */
export class RotationRefused extends Error {}

/** Where a rotation is: the steps run in this order, each one asked for (POST /ca/rotation). */
export type RotationPhase = 'stable' | 'trusting-next' | 'retiring-previous';

interface Root {
  name: string;
  certificatePem: string;
  x509: X509Certificate;
  /** Absent for the previous root: it signs nothing any more. */
  key?: CryptoKey;
}

/**
 * The fleet's certificate authority: a root given as files or generated on first start (and then
 * persisted, in the hub's state directory or in etcd for replicas, so a restarted hub keeps its
 * bundle), which signs short-lived X.509 SVIDs on gateways' certificate requests.
 *
 * A generated root rotates in three steps, as Istio's and SPIRE's do, each taken when the fleet is
 * ready for it (the hub checks, see server.ts): `add` generates the next root and puts it in the
 * bundle beside the current one (gateways learn it from their snapshots before any leaf chains to
 * it); `activate` signs with the next root from then on (gateways renew at once, and both roots stay
 * trusted, so old and new leaves verify each other); `retire` drops the old root from the bundle once
 * no unexpired leaf chains to it.
 */
export class MeshCa {
  readonly trustDomain: string;
  readonly #svidTtlMs: number;
  /** Where a generated CA is kept; undefined for a CA given as files (those do not rotate here). */
  readonly #store: CaStateStore | undefined;
  #state: CaState | undefined;
  #signing!: Root;
  #next: Root | undefined;
  #previous: Root | undefined;

  private constructor(settings: MeshCaSettings, store?: CaStateStore) {
    this.trustDomain = settings.trustDomain;
    this.#svidTtlMs = settings.svidTtlMs;
    this.#store = store;
  }

  /**
   * The CA of `settings`: its files, else the generated one `stored` (a directory: the hub's state
   * directory, or a store such as etcd's) holds, else a new one stored there.
   */
  static async open(settings: MeshCaSettings, stored: string | CaStateStore, now = new Date()): Promise<MeshCa> {
    if (settings.cert && settings.key) {
      const [cert, key] = await Promise.all([readText(settings.cert, 'cert'), readText(settings.key, 'key')]);
      const ca = new MeshCa(settings);
      ca.#signing = { name: 'files', certificatePem: cert, x509: new X509Certificate(cert) };
      ca.#signing.key = await checkedKeyPair(cert, key, settings.cert);
      return ca;
    }
    const store = typeof stored === 'string' ? new FileCaStore(join(stored, GENERATED_CA_DIR)) : stored;
    const ca = new MeshCa(settings, store);
    let state = await store.load();
    if (!state) {
      const first = await generateRoot(settings.trustDomain, now);
      state = await store.save({ signing: FIRST_ROOT, roots: { [FIRST_ROOT]: first } }, { ifAbsent: true });
    }
    await ca.adopt(state);
    return ca;
  }

  /** Use `state` (read from the store: this replica's own step, or one another replica took). */
  async adopt(state: CaState): Promise<void> {
    const root = async (name: string | undefined, signs: boolean): Promise<Root | undefined> => {
      if (!name) return undefined;
      const material = state.roots[name];
      if (!material) throw new MeshCaError([{ path: 'hub.ca', message: `stored CA names root ${name} but has none` }]);
      const r: Root = { name, certificatePem: material.cert, x509: new X509Certificate(material.cert) };
      if (signs) r.key = await checkedKeyPair(material.cert, material.key ?? '', `root ${name}`);
      return r;
    };
    const [signing, next, previous] = await Promise.all([
      root(state.signing, true),
      root(state.next, true),
      root(state.previous, false),
    ]);
    this.#state = state;
    this.#signing = signing!;
    this.#next = next;
    this.#previous = previous;
  }

  /** What the hub UI and GET /ca show: the roots, the rotation phase, the lifetime of the SVIDs signed. */
  get summary() {
    const root = (r: Root, role: string) => ({ role, fingerprint: r.x509.fingerprint256, expiresAt: isoOf(r.x509) });
    return {
      trustDomain: this.trustDomain,
      expiresAt: isoOf(this.#signing.x509),
      svidTtlMs: this.#svidTtlMs,
      phase: this.phase,
      roots: [
        root(this.#signing, 'signing'),
        ...(this.#next ? [root(this.#next, 'next')] : []),
        ...(this.#previous ? [root(this.#previous, 'previous')] : []),
      ],
    };
  }

  get phase(): RotationPhase {
    return this.#next ? 'trusting-next' : this.#previous ? 'retiring-previous' : 'stable';
  }

  /** The trust bundle (PEM): the signing root, and during a rotation the next or the previous one. */
  get bundlePem(): string {
    return [this.#signing, this.#next, this.#previous]
      .filter((r) => r !== undefined)
      .map((r) => r.certificatePem.trim())
      .join('\n')
      .concat('\n');
  }

  /** SHA-256 fingerprint of the root that signs now: a gateway whose SVID it did not sign renews. */
  get signerFingerprint(): string {
    return this.#signing.x509.fingerprint256;
  }

  /** SHA-256 fingerprint of the previous root while it is retiring (leaves it signed hold up `retire`). */
  get previousFingerprint(): string | undefined {
    return this.#previous?.x509.fingerprint256;
  }

  /** Rotation step 1: generate the next root and trust it beside the current one. */
  async addNextRoot(now = new Date()): Promise<void> {
    const state = this.#rotatable('stable', 'add');
    const name = `root-${now.getTime()}`;
    const next = await generateRoot(this.trustDomain, now);
    await this.#commit({ signing: state.signing, next: name, roots: { ...state.roots, [name]: next } });
  }

  /** Rotation step 2: the next root signs from now on; the current one stays trusted as `previous`. */
  async activateNextRoot(): Promise<void> {
    const state = this.#rotatable('trusting-next', 'activate');
    const next = state.next!;
    // The old key signs nothing any more: it is not kept (its certificate stays, trusted, until retired).
    const previous = { cert: state.roots[state.signing]!.cert };
    await this.#commit({
      signing: next,
      previous: state.signing,
      roots: { [next]: state.roots[next]!, [state.signing]: previous },
    });
  }

  /** Rotation step 3: the previous root leaves the bundle. */
  async retirePreviousRoot(): Promise<void> {
    const state = this.#rotatable('retiring-previous', 'retire');
    await this.#commit({ signing: state.signing, roots: { [state.signing]: state.roots[state.signing]! } });
  }

  async #commit(state: CaState): Promise<void> {
    await this.adopt(await this.#store!.save(state));
  }

  #rotatable(phase: RotationPhase, step: string): CaState {
    if (!this.#store || !this.#state)
      throw new RotationRefused(
        'the CA is given as files (hub.ca.cert, hub.ca.key): rotation here is for a generated CA; see docs/multicluster.md',
      );
    if (this.phase !== phase)
      throw new RotationRefused(`cannot ${step} in rotation phase ${this.phase} (${step} needs ${phase})`);
    return this.#state;
  }

  /** Sign the SVID a gateway asks for, or throw SvidRefused (see decideSvid for what is checked). */
  async issue(csrPem: string, caller: SvidCaller, now = new Date()): Promise<IssuedSvid> {
    const csr = await readCsr(csrPem).catch(() => {
      throw new SvidRefused(400, 'csr: expected a PEM certificate request');
    });
    const decision = decideSvid(csr, this.trustDomain, caller);
    if (!decision.ok) throw new SvidRefused(decision.status, decision.message);
    const signing = this.#signing;
    // Never past the CA's own expiry: a leaf outliving its issuer would fail to verify anyway.
    const caNotAfter = new Date(signing.x509.validTo).getTime();
    const notAfter = new Date(Math.min(now.getTime() + this.#svidTtlMs, caNotAfter));
    const certificate = await signCertificate(
      {
        subjectPublicKey: csr.publicKeyDer,
        commonName: caller.gatewayId,
        uris: [decision.spiffeId],
        isCa: false,
        notBefore: new Date(now.getTime() - BACKDATE_MS),
        notAfter,
      },
      { certificatePem: signing.certificatePem, key: signing.key! },
    );
    return {
      spiffeId: decision.spiffeId,
      certificate,
      bundle: this.bundlePem,
      expiresAt: notAfter.toISOString(),
      issuer: signing.x509.fingerprint256,
    };
  }
}

function isoOf(x509: X509Certificate): string {
  return new Date(x509.validTo).toISOString();
}

/** A new self-signed root (its key and certificate, PEM). */
async function generateRoot(trustDomain: string, now: Date): Promise<RootMaterial> {
  const keys = await generateKeyPair();
  const cert = await signCertificate(
    {
      subjectPublicKey: keys.publicKey,
      commonName: `Meridian mesh CA ${trustDomain} ${now.toISOString()}`,
      isCa: true,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(now.getTime() + GENERATED_CA_LIFETIME_MS),
    },
    { key: keys.privateKey },
  );
  return { cert, key: await privateKeyPem(keys.privateKey) };
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
