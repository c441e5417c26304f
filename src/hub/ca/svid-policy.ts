import type { CsrContents } from '../../common/x509-builder.js';
import { gatewaySpiffeId, parseGatewaySpiffeId } from '../../common/spiffe-id.js';

/** Who asks for an SVID, as the hub authenticated them. */
export interface SvidCaller {
  /** The gateway id in the request path (the hub already checked the caller may act as it). */
  gatewayId: string;
  /** The SPIFFE ID of the caller's verified client certificate, when it authenticated with an SVID. */
  callerSpiffeId?: string;
}

export type SvidDecision = { ok: true; spiffeId: string } | { ok: false; status: 400 | 403; message: string };

/**
 * Whether the hub signs this request, and for which SPIFFE ID. The request must be signed by the key
 * it asks a certificate for (else anyone who saw a CSR could get a certificate for someone else's
 * key), ask for exactly one SPIFFE ID, in this trust domain, naming the calling gateway, and a
 * caller that authenticated with an SVID renews that exact identity. The cluster segment is the
 * gateway's own claim, as its labels are (the hub authenticates gateway ids, not clusters): checking
 * it against a report would refuse a gateway restarted with a new `cluster` label until it reported.
 * Nothing else in the request (subject, other extensions) is copied into the certificate.
 */
export function decideSvid(csr: CsrContents, trustDomain: string, caller: SvidCaller): SvidDecision {
  if (!csr.isEcP256) return { ok: false, status: 400, message: 'the request must carry an EC P-256 key' };
  if (!csr.signatureValid)
    return { ok: false, status: 403, message: 'the request is not signed by the key it asks a certificate for' };
  if (csr.uris.length !== 1)
    return { ok: false, status: 400, message: `expected exactly one URI SAN, got ${csr.uris.length}` };
  const asked = csr.uris[0];
  const id = parseGatewaySpiffeId(asked);
  if (!id)
    return {
      ok: false,
      status: 400,
      message: `"${asked}" is not a gateway SPIFFE ID (spiffe://<trust-domain>/cluster/<cluster>/gateway/<id>)`,
    };
  const refuse = (why: string): SvidDecision => ({ ok: false, status: 403, message: `"${asked}" ${why}` });
  if (id.trustDomain !== trustDomain) return refuse(`is not in trust domain ${trustDomain}`);
  if (id.gatewayId !== caller.gatewayId) return refuse(`does not name gateway "${caller.gatewayId}"`);
  if (caller.callerSpiffeId && caller.callerSpiffeId !== asked)
    return refuse(`is not the identity the caller authenticated as (${caller.callerSpiffeId})`);
  return { ok: true, spiffeId: gatewaySpiffeId(id) };
}
