import { createHash, X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import type { PeerIdentity } from '../filters/filter.js';
import { hasCaBasicConstraint } from './basic-constraints.js';
import { parseSubjectAltName } from '../common/subject-alt-name.js';

export { parseSubjectAltName };

const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';
const MAX_SPIFFE_ID = 2048;
const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

/**
 * The identity of a verified TLS peer, computed once per connection: subject (RFC 2253 order),
 * SAN DNS names, URI SANs, the SPIFFE ID when exactly one URI SAN is `spiffe://`, and the SHA-256
 * fingerprint of the DER certificate (lowercase hex, XFCC `Hash=`).
 */
export function peerIdentity(cert: PeerCertificate | X509Certificate): PeerIdentity {
  const x509 = cert instanceof X509Certificate;
  const sans = parseSubjectAltName((x509 ? cert.subjectAltName : cert.subjectaltname) ?? '');
  const uris: string[] = [];
  const dnsNames: string[] = [];
  for (const [type, value] of sans) {
    if (type === 'URI') uris.push(value);
    else if (type === 'DNS') dnsNames.push(value);
  }
  const spiffe = uris.filter((u) => u.startsWith('spiffe://'));
  return {
    subject: x509 ? subjectFromMultiline(cert.subject) : subjectFromObject(cert.subject),
    dnsNames,
    uris,
    spiffeId: spiffe.length === 1 ? spiffe[0] : undefined,
    fingerprint: createHash('sha256').update(cert.raw).digest('hex'),
  };
}

/** X509Certificate.subject is one RDN per line, most significant first, already RFC 2253 escaped. */
function subjectFromMultiline(subject: string): string {
  return subject.split('\n').filter(Boolean).reverse().join(',');
}

function subjectFromObject(subject: PeerCertificate['subject'] | undefined): string {
  if (!subject) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(subject))
    for (const one of Array.isArray(v) ? v : [v]) parts.push(`${k}=${escapeRdn(String(one))}`);
  return parts.reverse().join(',');
}

function escapeRdn(v: string): string {
  return v
    .replace(/[,+"\\<>;]/g, '\\$&')
    .replace(/^[ #]/, '\\$&')
    .replace(/ $/, '\\ ');
}

/** A parsed SPIFFE ID, or undefined when the text is not one (SPIFFE-ID standard, section 2). */
export function parseSpiffeId(id: string): { trustDomain: string; path: string } | undefined {
  if (id.length > MAX_SPIFFE_ID || !id.startsWith('spiffe://')) return undefined;
  const rest = id.slice(9);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (!TRUST_DOMAIN_RE.test(trustDomain)) return undefined; // also refuses ports, userinfo, uppercase
  if (path !== '') {
    const segments = path.slice(1).split('/');
    for (const s of segments) if (!SEGMENT_RE.test(s) || s === '.' || s === '..') return undefined; // empty, query, fragment, %
  }
  return { trustDomain, path };
}

/**
 * Check that a peer's certificate is a usable X.509-SVID for the allowed trust domains: exactly one
 * URI SAN, which is a well-formed `spiffe://` ID whose trust domain is listed. Returns the reason to
 * refuse (a short metric-safe code) or undefined when valid.
 */
export function validateSvid(identity: PeerIdentity, trustDomains: readonly string[]): string | undefined {
  if (identity.uris.length === 0) return 'svid_missing_uri_san';
  if (identity.uris.length > 1) return 'svid_multiple_uri_sans';
  const parsed = parseSpiffeId(identity.uris[0]);
  if (!parsed) return 'svid_malformed_spiffe_id';
  if (parsed.path === '') return 'svid_no_workload_path';
  if (!trustDomains.includes(parsed.trustDomain)) return 'svid_untrusted_domain';
  return undefined;
}

/**
 * Leaf checks on a client certificate that chain verification alone does not guarantee everywhere:
 * not a CA (basicConstraints read directly, see basic-constraints.ts), clientAuth among the extended
 * key usages when the extension is present, and inside its validity window at `now`.
 */
export function clientCertificateError(cert: X509Certificate, now: Date = new Date()): string | undefined {
  if (cert.ca || hasCaBasicConstraint(cert.raw)) return 'client_certificate_is_ca';
  const eku = cert.keyUsage; // node names the extended key usage OIDs "keyUsage"
  if (eku && eku.length > 0 && !eku.includes(CLIENT_AUTH_OID)) return 'client_certificate_wrong_eku';
  if (now < new Date(cert.validFrom)) return 'client_certificate_not_yet_valid';
  if (now > new Date(cert.validTo)) return 'client_certificate_expired';
  return undefined;
}

/**
 * The peer identity in Envoy's `x-forwarded-client-cert` element format:
 * `Hash=<sha256 hex>;Subject="<RFC 2253>";URI=<uri>;DNS=<name>` (one URI=/DNS= pair per SAN).
 * Values containing `,`, `;`, `=` or `"` are double-quoted with `"` and `\` escaped, so a crafted SAN
 * cannot add fields or elements.
 */
export function formatXfcc(identity: PeerIdentity): string {
  let out = `Hash=${identity.fingerprint};Subject=${quote(identity.subject)}`;
  for (const u of identity.uris) out += `;URI=${xfccValue(u)}`;
  for (const d of identity.dnsNames) out += `;DNS=${xfccValue(d)}`;
  return out;
}

/** Double-quote, escaping `"` and backslash; control characters become backslash-xNN (a header value cannot carry CR/LF). */
function quote(v: string): string {
  return `"${v.replace(/["\\]/g, '\\$&').replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}"`;
}

function xfccValue(v: string): string {
  return /[,;="\\\x00-\x20\x7f]/.test(v) ? quote(v) : v;
}
