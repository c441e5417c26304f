import { describe, it, expect } from 'vitest';
import { verifySans } from '../../../src/pool/pool-registry.js';

/** Upstream certificate SAN allow-lists (upstreamTls.verifySubjectAltName), through the one SAN parser. */
describe('verifySans', () => {
  it('accepts a URI, DNS or IP SAN in the allow-list', () => {
    expect(
      verifySans({ subjectaltname: 'DNS:app.internal, URI:spiffe://prod/ns/app' }, ['spiffe://prod/ns/app']),
    ).toBeUndefined();
    expect(verifySans({ subjectaltname: 'DNS:app.internal' }, ['app.internal'])).toBeUndefined();
    expect(verifySans({ subjectaltname: 'IP Address:10.0.0.1' }, ['10.0.0.1'])).toBeUndefined();
  });

  it('refuses a SAN smuggled inside a quoted value (CVE-2021-44532 shape)', () => {
    const err = verifySans({ subjectaltname: 'URI:"spiffe://evil/x, URI:spiffe://prod/ns/app, DNS:z"' }, [
      'spiffe://prod/ns/app',
    ]);
    expect((err as NodeJS.ErrnoException).code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('refuses a certificate without SANs or with malformed SAN text', () => {
    expect(verifySans({ subjectaltname: undefined as unknown as string }, ['x'])).toBeInstanceOf(Error);
    expect(verifySans({ subjectaltname: 'URI:"unterminated' }, ['unterminated'])).toBeInstanceOf(Error);
  });
});
