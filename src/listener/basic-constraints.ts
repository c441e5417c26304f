const BASIC_CONSTRAINTS_OID = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x13]);

/**
 * True when a DER certificate's basicConstraints extension says cA = TRUE. Node's
 * X509Certificate.ca follows OpenSSL's X509_check_ca, which is false for a CA:TRUE certificate whose
 * keyUsage lacks keyCertSign, so a "leaf" minted as a CA would slip through; this reads the flag itself.
 * Layout after the OID: [BOOLEAN critical] OCTET STRING { SEQUENCE { [BOOLEAN cA] [INTEGER pathLen] } }.
 */
export function hasCaBasicConstraint(der: Buffer): boolean {
  const at = der.indexOf(BASIC_CONSTRAINTS_OID);
  if (at === -1) return false;
  let p = at + BASIC_CONSTRAINTS_OID.length;
  if (der[p] === 0x01 && der[p + 1] === 0x01) p += 3; // critical flag
  if (der[p] !== 0x04) return false; // OCTET STRING
  p += 2;
  if (der[p] !== 0x30) return false; // SEQUENCE
  const seqLen = der[p + 1];
  p += 2;
  return seqLen >= 3 && der[p] === 0x01 && der[p + 1] === 0x01 && der[p + 2] !== 0x00;
}
