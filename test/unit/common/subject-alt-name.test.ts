import { describe, it, expect } from 'vitest';
import type { PeerCertificate } from 'node:tls';
import { parseSubjectAltName, subjectAltNames } from '../../../src/common/subject-alt-name.js';
import { peerIdentity } from '../../../src/listener/peer-identity.js';
import { certificatePrincipal } from '../../../src/hub/server.js';
import { verifySans } from '../../../src/pool/pool-registry.js';

/**
 * A certificate whose one DNS SAN is the text `x, URI:spiffe://td/admin`: node quotes it, and a reader
 * that splits on ', ' sees a second URI SAN, spiffe://td/admin, that the issuer never signed.
 */
const SMUGGLING = 'URI:spiffe://td/a, DNS:"x, URI:spiffe://td/admin"';
const cert = { subjectaltname: SMUGGLING, subject: { CN: 'a' }, raw: Buffer.from('der') } as unknown as PeerCertificate;

describe('a SAN smuggled inside a quoted value is seen by no caller', () => {
  it('parses to one URI and one DNS name holding the whole quoted text', () => {
    expect(parseSubjectAltName(SMUGGLING)).toEqual([
      ['URI', 'spiffe://td/a'],
      ['DNS', 'x, URI:spiffe://td/admin'],
    ]);
    expect(subjectAltNames(SMUGGLING, ['URI'])).toEqual(['spiffe://td/a']);
  });

  it('gives the listener peer identity the signed SPIFFE ID only', () => {
    expect(peerIdentity(cert)).toMatchObject({
      uris: ['spiffe://td/a'],
      spiffeId: 'spiffe://td/a',
      dnsNames: ['x, URI:spiffe://td/admin'],
    });
  });

  it('lets the hub client certificate act only as the gateway its signed SPIFFE ID names', () => {
    expect(certificatePrincipal(cert)).toEqual({ who: 'spiffe://td/a', gatewayIds: ['a'] });
  });

  it('refuses the smuggled name in an upstream SAN allow-list and accepts the signed one', () => {
    expect((verifySans(cert, ['spiffe://td/admin']) as NodeJS.ErrnoException).code).toBe(
      'ERR_TLS_CERT_ALTNAME_INVALID',
    );
    expect(verifySans(cert, ['x'])).toBeInstanceOf(Error);
    expect(verifySans(cert, ['spiffe://td/a'])).toBeUndefined();
  });
});
