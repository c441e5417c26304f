import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { generateTestPki, SPIFFE, type TestPki } from '../../helpers/certs.js';
import {
  peerIdentity,
  validateSvid,
  formatXfcc,
  parseSubjectAltName,
  parseSpiffeId,
  clientCertificateError,
} from '../../../src/listener/peer-identity.js';
import type { PeerIdentity } from '../../../src/filters/filter.js';

let pki: TestPki;
beforeAll(() => {
  pki = generateTestPki();
});
afterAll(() => pki?.cleanup());

const x509 = (pem: string) => new X509Certificate(pem);
const id = (uris: string[], extra: Partial<PeerIdentity> = {}): PeerIdentity => ({
  subject: 'CN=x',
  dnsNames: [],
  uris,
  spiffeId: undefined,
  fingerprint: 'ab',
  ...extra,
});

describe('peer identity extraction', () => {
  it('extracts subject, DNS names, URI SANs, the SPIFFE ID and the DER fingerprint from an X509Certificate', () => {
    const cert = x509(pki.clientOps.certPem);
    const p = peerIdentity(cert);
    expect(p).toEqual({
      subject: 'CN=client-ops',
      dnsNames: ['ops.internal'],
      uris: [SPIFFE.ops],
      spiffeId: SPIFFE.ops,
      fingerprint: cert.fingerprint256.replace(/:/g, '').toLowerCase(),
    });
  });

  it('gives the same identity from a tls.PeerCertificate-shaped object', () => {
    const cert = x509(pki.clientOps.certPem);
    const legacy = cert.toLegacyObject();
    expect(peerIdentity(legacy)).toEqual(peerIdentity(cert));
  });

  it('leaves spiffeId unset when a certificate carries two spiffe:// URIs or none', () => {
    expect(peerIdentity(x509(pki.clientTwoSpiffe.certPem))).toMatchObject({
      spiffeId: undefined,
      uris: [SPIFFE.ops, SPIFFE.dev],
    });
    expect(peerIdentity(x509(pki.clientNoSpiffe.certPem))).toMatchObject({
      spiffeId: undefined,
      uris: [],
      dnsNames: ['plain.internal'],
    });
  });

  it('decodes JSON-quoted SAN values instead of splitting them (no entry smuggling)', () => {
    expect(parseSubjectAltName('DNS:a, URI:"spiffe://td/x, URI:spiffe://evil/y", IP Address:127.0.0.1')).toEqual([
      ['DNS', 'a'],
      ['URI', 'spiffe://td/x, URI:spiffe://evil/y'],
      ['IP Address', '127.0.0.1'],
    ]);
  });
});

describe('X.509-SVID validation', () => {
  const table: Array<[string, string[], string | undefined]> = [
    ['a single SPIFFE ID in an allowed trust domain', [SPIFFE.ops], undefined],
    ['no URI SAN', [], 'svid_missing_uri_san'],
    ['two URI SANs', [SPIFFE.ops, SPIFFE.dev], 'svid_multiple_uri_sans'],
    ['an https URI', ['https://prod.example/x'], 'svid_malformed_spiffe_id'],
    ['another trust domain', [SPIFFE.otherDomain], 'svid_untrusted_domain'],
    ['an uppercase trust domain', ['spiffe://Prod.example/ns/x'], 'svid_malformed_spiffe_id'],
    ['a port in the trust domain', ['spiffe://prod.example:443/ns/x'], 'svid_malformed_spiffe_id'],
    ['a dot-dot segment', ['spiffe://prod.example/ns/../x'], 'svid_malformed_spiffe_id'],
    ['an empty segment', ['spiffe://prod.example/ns//x'], 'svid_malformed_spiffe_id'],
    ['a query', ['spiffe://prod.example/ns/x?y=1'], 'svid_malformed_spiffe_id'],
    ['no workload path', ['spiffe://prod.example'], 'svid_no_workload_path'],
  ];
  for (const [what, uris, expected] of table) {
    it(`${expected ? 'refuses' : 'accepts'} ${what}`, () =>
      expect(validateSvid(id(uris), ['prod.example'])).toBe(expected));
  }

  it('validates the generated certificates end to end', () => {
    const check = (pem: string) => validateSvid(peerIdentity(x509(pem)), ['prod.example']);
    expect(check(pki.clientOps.certPem)).toBeUndefined();
    expect(check(pki.clientOtherDomain.certPem)).toBe('svid_untrusted_domain');
    expect(check(pki.clientTwoSpiffe.certPem)).toBe('svid_multiple_uri_sans');
    expect(check(pki.clientNoSpiffe.certPem)).toBe('svid_missing_uri_san');
  });

  it('parses trust domain and path', () => {
    expect(parseSpiffeId(SPIFFE.ops)).toEqual({ trustDomain: 'prod.example', path: '/ns/ops/sa/x' });
  });
});

describe('x-forwarded-client-cert formatting', () => {
  it('follows Envoy element format with one URI and DNS pair per SAN', () => {
    expect(
      formatXfcc(
        id(['spiffe://td/a'], { subject: 'CN=c,O=Acme', dnsNames: ['a.local', 'b.local'], fingerprint: 'f00d' }),
      ),
    ).toBe('Hash=f00d;Subject="CN=c,O=Acme";URI=spiffe://td/a;DNS=a.local;DNS=b.local');
  });

  it('quotes values that could add fields and never emits CR or LF', () => {
    const out = formatXfcc(id(['spiffe://td/a;By=evil', 'x"y\r\nInjected: 1'], { subject: 'CN=a\\"b' }));
    expect(out).toBe('Hash=ab;Subject="CN=a\\\\\\"b";URI="spiffe://td/a;By=evil";URI="x\\"y\\x0d\\x0aInjected: 1"');
    expect(out).not.toMatch(/[\r\n]/);
  });
});

describe('generated test certificates', () => {
  const chainsTo = (pem: string, ca: string) => x509(pem).verify(x509(ca).publicKey);

  it('has a CA and a server certificate for localhost and 127.0.0.1', () => {
    const ca = x509(pki.ca.certPem);
    expect(ca.ca).toBe(true);
    const server = x509(pki.server.certPem);
    expect(chainsTo(pki.server.certPem, pki.ca.certPem)).toBe(true);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(server.checkPrivateKey(createPrivateKey(pki.server.keyPem))).toBe(true);
  });

  it('issues valid clientAuth SPIFFE client certificates', () => {
    for (const c of [pki.clientOps, pki.clientDev, pki.clientOtherDomain]) {
      expect(chainsTo(c.certPem, pki.ca.certPem)).toBe(true);
      expect(clientCertificateError(x509(c.certPem))).toBeUndefined();
    }
  });

  it('gives each broken client certificate exactly its intended flaw', () => {
    expect(clientCertificateError(x509(pki.clientExpired.certPem))).toBe('client_certificate_expired');
    expect(clientCertificateError(x509(pki.clientNotYetValid.certPem))).toBe('client_certificate_not_yet_valid');
    expect(clientCertificateError(x509(pki.clientLeafCa.certPem))).toBe('client_certificate_is_ca');
    expect(clientCertificateError(x509(pki.clientNoClientAuth.certPem))).toBe('client_certificate_wrong_eku');
    for (const c of [pki.clientExpired, pki.clientNotYetValid, pki.clientLeafCa, pki.clientNoClientAuth])
      expect(chainsTo(c.certPem, pki.ca.certPem)).toBe(true);
  });

  it('signs the foreign client with a CA the test CA does not vouch for', () => {
    expect(chainsTo(pki.clientForeign.certPem, pki.ca.certPem)).toBe(false);
    expect(chainsTo(pki.clientForeign.certPem, pki.foreignCa.certPem)).toBe(true);
    expect(clientCertificateError(x509(pki.clientForeign.certPem))).toBeUndefined();
  });

  it('places expiry and not-before windows around now', () => {
    const now = Date.now();
    expect(new Date(x509(pki.clientExpired.certPem).validTo).getTime()).toBeLessThan(now);
    expect(new Date(x509(pki.clientNotYetValid.certPem).validFrom).getTime()).toBeGreaterThan(now);
  });
});
