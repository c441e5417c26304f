/**
 * Read the SNI server name from a TLS ClientHello without terminating TLS.
 * Returns the name, null when the hello has no SNI or is malformed, or undefined when more bytes are
 * needed. Only the first record is parsed: a ClientHello split across records is refused (null).
 */
export function readSni(buf: Buffer): string | null | undefined {
  if (buf.length < 5) return undefined;
  if (buf[0] !== 0x16) return null; // not a handshake record
  const recordLen = buf.readUInt16BE(3);
  if (buf.length < 5 + recordLen) return undefined;
  let p = 5;
  const end = 5 + recordLen;
  if (buf[p] !== 0x01) return null; // not a ClientHello
  p += 4 + 2 + 32; // handshake header, client_version, random
  if (p >= end) return null;
  p += 1 + buf[p]; // session id
  if (p + 2 > end) return null;
  p += 2 + buf.readUInt16BE(p); // cipher suites
  if (p + 1 > end) return null;
  p += 1 + buf[p]; // compression methods
  if (p + 2 > end) return null;
  const extEnd = Math.min(end, p + 2 + buf.readUInt16BE(p));
  p += 2;
  while (p + 4 <= extEnd) {
    const type = buf.readUInt16BE(p);
    const len = buf.readUInt16BE(p + 2);
    p += 4;
    if (type === 0x0000) return parseServerNameList(buf, p, Math.min(p + len, extEnd));
    p += len;
  }
  return null;
}

function parseServerNameList(buf: Buffer, p: number, end: number): string | null {
  if (p + 2 > end) return null;
  p += 2;
  while (p + 3 <= end) {
    const nameType = buf[p];
    const len = buf.readUInt16BE(p + 1);
    p += 3;
    if (p + len > end) return null;
    if (nameType === 0) {
      const name = buf.toString('latin1', p, p + len).toLowerCase();
      return /^[a-z0-9.-]+$/.test(name) ? name : null;
    }
    p += len;
  }
  return null;
}
