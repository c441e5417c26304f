/**
 * Building and signing X.509 certificates and PKCS#10 certificate requests: the steps Node's crypto
 * cannot do (X509Certificate only reads and verifies). pkijs (with its ASN.1 layer asn1js) does the
 * DER structures; every key operation runs on Node's own WebCrypto. One key type only: EC P-256
 * with ECDSA-SHA256, the SPIFFE X.509-SVID recommendation and what every TLS stack accepts.
 */
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

/** Node's WebCrypto, handed to pkijs explicitly (no process-wide engine is installed). */
const engine = new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto as unknown as Crypto });
const subtle = webcrypto.subtle as unknown as SubtleCrypto;
const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const HASH = 'SHA-256';
const OID_COMMON_NAME = '2.5.4.3';
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
/** GeneralName choice for uniformResourceIdentifier (RFC 5280 4.2.1.6). */
const GENERAL_NAME_URI = 6;
/** KeyUsage bits (RFC 5280 4.2.1.3), first byte of the BIT STRING: digitalSignature 0x80, keyCertSign 0x04, cRLSign 0x02. */
const KU_DIGITAL_SIGNATURE = 0x80;
const KU_CA = 0x04 | 0x02;

/** A fresh EC P-256 key pair, extractable so the private key can be written as PKCS#8 PEM. */
export function generateKeyPair(): Promise<CryptoKeyPair> {
  return subtle.generateKey(EC_P256, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

/** The private key as PKCS#8 PEM (what Node's tls and every server read). */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  return toPem('PRIVATE KEY', await subtle.exportKey('pkcs8', key));
}

/** A PEM private key (PKCS#8 or SEC1 "EC PRIVATE KEY") as a signing key; it must be EC P-256. */
export async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  const der = createPrivateKey(pem).export({ format: 'der', type: 'pkcs8' });
  return subtle.importKey('pkcs8', der, EC_P256, true, ['sign']);
}

/**
 * A PKCS#10 request signed with `keys` (proof that the requester holds the private key), asking for
 * exactly the given URI SANs. The private key never leaves the caller; the request carries the public key.
 */
export async function createCsr(keys: CryptoKeyPair, opts: { commonName: string; uris: string[] }): Promise<string> {
  const csr = new pkijs.CertificationRequest();
  csr.subject.typesAndValues.push(commonName(opts.commonName));
  csr.attributes = [
    new pkijs.Attribute({
      type: OID_EXTENSION_REQUEST,
      values: [new pkijs.Extensions({ extensions: [subjectAltNameExtension(opts.uris)] }).toSchema()],
    }),
  ];
  await csr.subjectPublicKeyInfo.importKey(keys.publicKey, engine);
  await csr.sign(keys.privateKey, HASH, engine);
  return toPem('CERTIFICATE REQUEST', csr.toSchema().toBER(false));
}

/** What a certificate request asks for, read from its PEM, and whether its signature is its own key's. */
export interface CsrContents {
  /** The signature verifies with the request's own public key (proof of possession). */
  signatureValid: boolean;
  /** URI SANs requested in the extensionRequest attribute. */
  uris: string[];
  /** The requested key as SubjectPublicKeyInfo DER. */
  publicKeyDer: Buffer;
  /** True when the key is EC P-256 (the one key type issued). */
  isEcP256: boolean;
}

/** Parse a PEM certificate request; throws on text that is not one. */
export async function readCsr(pem: string): Promise<CsrContents> {
  const csr = pkijs.CertificationRequest.fromBER(fromPem('CERTIFICATE REQUEST', pem));
  const signatureValid = await csr.verify(engine).catch(() => false);
  const uris: string[] = [];
  for (const attr of csr.attributes ?? []) {
    if (attr.type !== OID_EXTENSION_REQUEST) continue;
    for (const value of attr.values) {
      for (const ext of new pkijs.Extensions({ schema: value }).extensions) {
        if (ext.extnID !== pkijs.id_SubjectAltName) continue;
        const names = ext.parsedValue as pkijs.AltName;
        for (const n of names.altNames) if (n.type === GENERAL_NAME_URI) uris.push(String(n.value));
      }
    }
  }
  const spki = csr.subjectPublicKeyInfo;
  const params = spki.algorithm.algorithmParams as asn1js.ObjectIdentifier | undefined;
  return {
    signatureValid,
    uris,
    publicKeyDer: Buffer.from(spki.toSchema().toBER(false)),
    isEcP256:
      spki.algorithm.algorithmId === '1.2.840.10045.2.1' && params?.valueBlock?.toString() === '1.2.840.10045.3.1.7',
  };
}

/** What a certificate says about its subject; the issuer signs it. */
export interface CertificateSpec {
  /** SubjectPublicKeyInfo DER of the subject's key (from a CSR), or the key itself. */
  subjectPublicKey: Buffer | CryptoKey;
  commonName: string;
  uris?: string[];
  /** A CA certificate (may sign others) or a leaf (TLS server and client). */
  isCa: boolean;
  notBefore: Date;
  notAfter: Date;
}

/**
 * Sign a certificate. `issuer` is the signing CA (its certificate PEM and key); without a certificate
 * the result is self-signed (a new root), with the subject as its own issuer.
 */
export async function signCertificate(
  spec: CertificateSpec,
  issuer: { certificatePem?: string; key: CryptoKey },
): Promise<string> {
  const cert = new pkijs.Certificate();
  cert.version = 2;
  // 16 random bytes: unique without a serial database (RFC 5280 4.1.2.2). The first byte has its top
  // bit clear (positive) and the next one set (never 0x00): DER forbids a leading zero byte before a
  // byte below 0x80, and such a serial (1 in 256) made a certificate that does not parse.
  const serial = randomBytes(16);
  serial[0] = (serial[0] & 0x3f) | 0x40;
  cert.serialNumber = new asn1js.Integer({ valueHex: serial });
  cert.subject.typesAndValues.push(commonName(spec.commonName));
  const issuerCert = issuer.certificatePem
    ? pkijs.Certificate.fromBER(fromPem('CERTIFICATE', issuer.certificatePem))
    : undefined;
  if (issuerCert) cert.issuer = issuerCert.subject;
  else cert.issuer.typesAndValues.push(commonName(spec.commonName));
  cert.notBefore.value = spec.notBefore;
  cert.notAfter.value = spec.notAfter;
  if (Buffer.isBuffer(spec.subjectPublicKey))
    cert.subjectPublicKeyInfo = pkijs.PublicKeyInfo.fromBER(toArrayBuffer(spec.subjectPublicKey));
  else await cert.subjectPublicKeyInfo.importKey(spec.subjectPublicKey, engine);
  cert.extensions = extensionsOf(spec);
  await cert.sign(issuer.key, HASH, engine);
  return toPem('CERTIFICATE', cert.toSchema().toBER(false));
}

/** Basic constraints and key usage (critical, as RFC 5280 asks), the URI SANs, and for a leaf both TLS roles. */
function extensionsOf(spec: CertificateSpec): pkijs.Extension[] {
  const extensions = [
    new pkijs.Extension({
      extnID: pkijs.id_BasicConstraints,
      critical: true,
      extnValue: new pkijs.BasicConstraints({ cA: spec.isCa }).toSchema().toBER(false),
    }),
    new pkijs.Extension({
      extnID: pkijs.id_KeyUsage,
      critical: true,
      extnValue: keyUsage(spec.isCa ? KU_CA | KU_DIGITAL_SIGNATURE : KU_DIGITAL_SIGNATURE).toBER(false),
    }),
  ];
  if (!spec.isCa)
    extensions.push(
      new pkijs.Extension({
        extnID: pkijs.id_ExtKeyUsage,
        extnValue: new pkijs.ExtKeyUsage({ keyPurposes: [OID_SERVER_AUTH, OID_CLIENT_AUTH] }).toSchema().toBER(false),
      }),
    );
  // An X.509-SVID's SAN extension is critical when the subject is empty; ours has a CN, so it need not be.
  if (spec.uris?.length) extensions.push(subjectAltNameExtension(spec.uris));
  return extensions;
}

/** A one-byte KeyUsage BIT STRING; DER drops trailing zero bits (0x80: 7 unused bits, 0x86: 1). */
function keyUsage(bits: number): asn1js.BitString {
  let unusedBits = 0;
  while (unusedBits < 7 && !(bits & (1 << unusedBits))) unusedBits++;
  return new asn1js.BitString({ valueHex: new Uint8Array([bits]).buffer, unusedBits });
}

function subjectAltNameExtension(uris: string[]): pkijs.Extension {
  const names = new pkijs.GeneralNames({
    names: uris.map((value) => new pkijs.GeneralName({ type: GENERAL_NAME_URI, value })),
  });
  return new pkijs.Extension({ extnID: pkijs.id_SubjectAltName, extnValue: names.toSchema().toBER(false) });
}

function commonName(value: string): pkijs.AttributeTypeAndValue {
  return new pkijs.AttributeTypeAndValue({ type: OID_COMMON_NAME, value: new asn1js.Utf8String({ value }) });
}

function toPem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;
}

/** The DER inside the first PEM block with `label`; throws when there is none. */
function fromPem(label: string, pem: string): ArrayBuffer {
  const m = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(pem);
  if (!m) throw new Error(`expected a PEM ${label.toLowerCase()}`);
  return toArrayBuffer(Buffer.from(m[1].replace(/\s+/g, ''), 'base64'));
}

function toArrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}
