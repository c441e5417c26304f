import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One generated certificate: PEM text and the files holding it. */
export interface CertPair {
  certPem: string;
  keyPem: string;
  certFile: string;
  keyFile: string;
}

/** What to put in a certificate issued by {@link CertAuthority.issue}. */
export interface CertSpec {
  /** File base name (unique per authority) and, by default, the CN. */
  name: string;
  cn?: string;
  /** subjectAltName entries, OpenSSL syntax: "DNS:localhost", "IP:127.0.0.1", "URI:spiffe://td/x". */
  san?: string[];
  /** extendedKeyUsage value, e.g. "clientAuth"; omitted when null. Default: "clientAuth". */
  eku?: string | null;
  /** Mint it with basicConstraints CA:TRUE (a "leaf" that claims to be a CA). */
  ca?: boolean;
  /** Validity window; default: from one hour ago to 30 days ahead. */
  notBefore?: Date;
  notAfter?: Date;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** OpenSSL `ca -startdate/-enddate` format: YYYYMMDDHHMMSSZ (GeneralizedTime). */
function stamp(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A throwaway certificate authority driven by the `openssl` CLI (3.0 has no `x509 -not_before`, so
 * leaves are signed with `openssl ca`, whose -startdate/-enddate give expired and future windows).
 * EC P-256 keys keep generation fast (a dozen certificates in well under a second).
 */
export class CertAuthority implements CertPair {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly #cnf: string;

  constructor(dir: string, name: string) {
    this.dir = join(dir, name);
    mkdirSync(join(this.dir, 'issued'), { recursive: true });
    writeFileSync(join(this.dir, 'index.txt'), '');
    writeFileSync(join(this.dir, 'serial'), '1000\n');
    this.#cnf = join(this.dir, 'ca.cnf');
    writeFileSync(
      this.#cnf,
      [
        '[ ca ]',
        'default_ca = CA_default',
        '[ CA_default ]',
        `dir = ${this.dir}`,
        'database = $dir/index.txt',
        'new_certs_dir = $dir/issued',
        'serial = $dir/serial',
        'default_md = sha256',
        'policy = policy_any',
        'unique_subject = no',
        'copy_extensions = none',
        '[ policy_any ]',
        'commonName = supplied',
        '',
      ].join('\n'),
    );
    this.keyFile = join(this.dir, 'ca.key');
    this.certFile = join(this.dir, 'ca.crt');
    openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        this.keyFile,
        '-out',
        this.certFile,
        '-days',
        '3650',
        '-subj',
        `/CN=${name}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      this.dir,
    );
  }

  get certPem(): string {
    return readFileSync(this.certFile, 'utf8');
  }

  get keyPem(): string {
    return readFileSync(this.keyFile, 'utf8');
  }

  /** Issue a certificate signed by this authority. */
  issue(spec: CertSpec): CertPair {
    const base = join(this.dir, spec.name);
    const keyFile = `${base}.key`;
    const certFile = `${base}.crt`;
    openssl(
      [
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        keyFile,
        '-out',
        `${base}.csr`,
        '-subj',
        `/CN=${spec.cn ?? spec.name}`,
      ],
      this.dir,
    );
    writeFileSync(`${base}.ext`, extensions(spec));
    const now = Date.now();
    openssl(
      [
        'ca',
        '-batch',
        '-notext',
        '-config',
        this.#cnf,
        '-cert',
        this.certFile,
        '-keyfile',
        this.keyFile,
        '-in',
        `${base}.csr`,
        '-out',
        certFile,
        '-extfile',
        `${base}.ext`,
        '-extensions',
        'leaf',
        '-startdate',
        stamp(spec.notBefore ?? new Date(now - HOUR)),
        '-enddate',
        stamp(spec.notAfter ?? new Date(now + 30 * DAY)),
      ],
      this.dir,
    );
    return { certFile, keyFile, certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
  }
}

function extensions(spec: CertSpec): string {
  const lines = ['[ leaf ]', spec.ca ? 'basicConstraints = critical,CA:TRUE' : 'basicConstraints = critical,CA:FALSE'];
  lines.push(
    spec.ca
      ? 'keyUsage = critical,digitalSignature,keyCertSign'
      : 'keyUsage = critical,digitalSignature,keyEncipherment',
  );
  const eku = spec.eku === undefined ? 'clientAuth' : spec.eku;
  if (eku) lines.push(`extendedKeyUsage = ${eku}`);
  if (spec.san?.length) lines.push(`subjectAltName = ${spec.san.join(',')}`);
  return `${lines.join('\n')}\n`;
}

/** The SPIFFE IDs carried by the generated client certificates. */
export const SPIFFE = {
  ops: 'spiffe://prod.example/ns/ops/sa/x',
  dev: 'spiffe://prod.example/ns/dev/sa/y',
  otherDomain: 'spiffe://other.example/ns/ops/sa/x',
} as const;

/** A complete test PKI: two CAs and one certificate per interesting property. */
export interface TestPki {
  dir: string;
  ca: CertAuthority;
  /** A second CA nobody trusts. */
  foreignCa: CertAuthority;
  /** serverAuth, SAN DNS:localhost + IP:127.0.0.1. */
  server: CertPair;
  /** clientAuth, URI SAN spiffe://prod.example/ns/ops/sa/x, DNS:ops.internal. */
  clientOps: CertPair;
  /** clientAuth, URI SAN spiffe://prod.example/ns/dev/sa/y. */
  clientDev: CertPair;
  /** clientAuth, SPIFFE ID in trust domain other.example. */
  clientOtherDomain: CertPair;
  /** clientAuth, no URI SAN at all (DNS only). */
  clientNoSpiffe: CertPair;
  /** clientAuth, two spiffe:// URI SANs (not a valid X.509-SVID). */
  clientTwoSpiffe: CertPair;
  /** Valid window ended yesterday. */
  clientExpired: CertPair;
  /** Valid window starts tomorrow. */
  clientNotYetValid: CertPair;
  /** Signed by foreignCa, otherwise like clientOps. */
  clientForeign: CertPair;
  /** basicConstraints CA:TRUE on a client leaf. */
  clientLeafCa: CertPair;
  /** extendedKeyUsage serverAuth only (no clientAuth). */
  clientNoClientAuth: CertPair;
  /** Remove the temp dir. */
  cleanup(): void;
}

/** Generate a {@link TestPki} in a fresh temp dir (synchronous; ~25 openssl runs). */
export function generateTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-certs-'));
  const ca = new CertAuthority(dir, 'meridian-test-ca');
  const foreignCa = new CertAuthority(dir, 'foreign-ca');
  const now = Date.now();
  const ops = ['URI:' + SPIFFE.ops, 'DNS:ops.internal'];
  return {
    dir,
    ca,
    foreignCa,
    server: ca.issue({ name: 'server', cn: 'localhost', san: ['DNS:localhost', 'IP:127.0.0.1'], eku: 'serverAuth' }),
    clientOps: ca.issue({ name: 'client-ops', san: ops }),
    clientDev: ca.issue({ name: 'client-dev', san: ['URI:' + SPIFFE.dev] }),
    clientOtherDomain: ca.issue({ name: 'client-other-domain', san: ['URI:' + SPIFFE.otherDomain] }),
    clientNoSpiffe: ca.issue({ name: 'client-no-spiffe', san: ['DNS:plain.internal'] }),
    clientTwoSpiffe: ca.issue({ name: 'client-two-spiffe', san: ['URI:' + SPIFFE.ops, 'URI:' + SPIFFE.dev] }),
    clientExpired: ca.issue({
      name: 'client-expired',
      san: ops,
      notBefore: new Date(now - 10 * DAY),
      notAfter: new Date(now - DAY),
    }),
    clientNotYetValid: ca.issue({
      name: 'client-not-yet-valid',
      san: ops,
      notBefore: new Date(now + DAY),
      notAfter: new Date(now + 10 * DAY),
    }),
    clientForeign: foreignCa.issue({ name: 'client-foreign', san: ops }),
    clientLeafCa: ca.issue({ name: 'client-leaf-ca', san: ops, ca: true }),
    clientNoClientAuth: ca.issue({ name: 'client-no-client-auth', san: ops, eku: 'serverAuth' }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
