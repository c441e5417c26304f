import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './gateway.js';

/** A certificate issued at test time: file paths and PEM text. */
export interface Issued {
  cert: string;
  key: string;
  certPem: string;
  keyPem: string;
}

export interface IssueOptions {
  cn: string;
  /** subjectAltName entries, e.g. ["DNS:localhost", "IP:127.0.0.1", "URI:spiffe://td/ns/a"] */
  san?: string[];
  eku?: 'serverAuth' | 'clientAuth' | 'serverAuth,clientAuth';
  isCa?: boolean;
  /** OpenSSL time strings YYYYMMDDHHMMSSZ; default: valid from an hour ago for a day. */
  notBefore?: string;
  notAfter?: string;
}

const stamp = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';

/**
 * A throwaway certificate authority driven by the `openssl` CLI (`openssl ca`, so validity windows in
 * the past or the future can be set for expired / not-yet-valid certificates).
 */
export class TestCa {
  readonly dir: string;
  readonly cert: string;
  readonly key: string;
  #n = 0;

  constructor(name = 'Test CA') {
    this.dir = tempDir('meridian-pki-');
    mkdirSync(join(this.dir, 'newcerts'));
    writeFileSync(join(this.dir, 'index.txt'), '');
    writeFileSync(join(this.dir, 'serial'), '1000\n');
    writeFileSync(
      join(this.dir, 'ca.cnf'),
      [
        '[ ca ]',
        'default_ca = CA_default',
        '[ CA_default ]',
        `dir = ${this.dir}`,
        'database = $dir/index.txt',
        'new_certs_dir = $dir/newcerts',
        'serial = $dir/serial',
        'default_md = sha256',
        'policy = policy_any',
        'unique_subject = no',
        'copy_extensions = none',
        '[ policy_any ]',
        'commonName = supplied',
      ].join('\n'),
    );
    this.key = join(this.dir, 'ca.key');
    this.cert = join(this.dir, 'ca.crt');
    openssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      this.key,
      '-out',
      this.cert,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    );
  }

  get certPem(): string {
    return readFileSync(this.cert, 'utf8');
  }

  /** Issue a leaf (or intermediate-looking) certificate signed by this CA. */
  issue(o: IssueOptions): Issued {
    const base = join(this.dir, `leaf${++this.#n}`);
    const key = `${base}.key`;
    const csr = `${base}.csr`;
    const cert = `${base}.crt`;
    openssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      csr,
      '-subj',
      `/CN=${o.cn}`,
    );
    const ext = [
      '[ v3 ]',
      `basicConstraints = critical,CA:${o.isCa ? 'TRUE' : 'FALSE'}`,
      'keyUsage = critical,digitalSignature,keyEncipherment',
      ...(o.eku ? [`extendedKeyUsage = ${o.eku}`] : []),
      ...(o.san?.length ? [`subjectAltName = ${o.san.join(',')}`] : []),
    ].join('\n');
    writeFileSync(`${base}.ext`, ext);
    const now = Date.now();
    openssl(
      'ca',
      '-batch',
      '-notext',
      '-config',
      join(this.dir, 'ca.cnf'),
      '-cert',
      this.cert,
      '-keyfile',
      this.key,
      '-in',
      csr,
      '-out',
      cert,
      '-startdate',
      o.notBefore ?? stamp(new Date(now - 3600_000)),
      '-enddate',
      o.notAfter ?? stamp(new Date(now + 86400_000)),
      '-extfile',
      `${base}.ext`,
      '-extensions',
      'v3',
    );
    return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
  }

  /** A server certificate for localhost / 127.0.0.1 (plus extra SANs). */
  server(extraSan: string[] = []): Issued {
    return this.issue({ cn: 'localhost', san: ['DNS:localhost', 'IP:127.0.0.1', ...extraSan], eku: 'serverAuth' });
  }

  /** A client certificate, optionally carrying a SPIFFE ID as URI SAN. */
  client(spiffeId?: string, o: Partial<IssueOptions> = {}): Issued {
    return this.issue({ cn: 'client', san: spiffeId ? [`URI:${spiffeId}`] : undefined, eku: 'clientAuth', ...o });
  }
}

export const pastWindow = () => ({
  notBefore: stamp(new Date(Date.now() - 10 * 86400_000)),
  notAfter: stamp(new Date(Date.now() - 5 * 86400_000)),
});
export const futureWindow = () => ({
  notBefore: stamp(new Date(Date.now() + 5 * 86400_000)),
  notAfter: stamp(new Date(Date.now() + 10 * 86400_000)),
});

function openssl(...args: string[]) {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
