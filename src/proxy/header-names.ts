/*
 * Response header names without decoding each one. undici hands a response's header names over as
 * Buffers; decoding one into a string and lower-casing it costs about 70 ns, six of them per response.
 * Upstreams send few distinct names, so the names below are kept as strings once: a name whose bytes
 * equal one of them exactly (case included: names reach the client as the upstream spelled them)
 * is that string, with its lower-case form beside it. Any other name is decoded as before.
 *
 * Worked example: the 14 name bytes `43 6f 6e 74 65 6e 74 2d 4c 65 6e 67 74 68` ("Content-Length")
 * hash, by their length and their first, middle and last bytes, to a slot holding "Content-Length"; the
 * bytes are compared with it one by one and the answer is its index i: NAMES[i] "Content-Length",
 * LOWER[i] "content-length". "content-length" hashes elsewhere (its first byte differs) and has a slot
 * of its own; "CONTENT-LENGTH" finds no equal name and is decoded.
 */

const CANONICAL = [
  'Accept-Ranges',
  'Access-Control-Allow-Credentials',
  'Access-Control-Allow-Headers',
  'Access-Control-Allow-Methods',
  'Access-Control-Allow-Origin',
  'Access-Control-Expose-Headers',
  'Age',
  'Cache-Control',
  'Connection',
  'Content-Encoding',
  'Content-Language',
  'Content-Length',
  'Content-Security-Policy',
  'Content-Type',
  'Date',
  'ETag',
  'Etag',
  'Expires',
  'Keep-Alive',
  'Last-Modified',
  'Link',
  'Location',
  'Pragma',
  'Referrer-Policy',
  'Retry-After',
  'Server',
  'Set-Cookie',
  'Strict-Transport-Security',
  'Trailer',
  'Transfer-Encoding',
  'Vary',
  'Via',
  'WWW-Authenticate',
  'X-Content-Type-Options',
  'X-Frame-Options',
  'X-Request-Id',
  'X-XSS-Protection',
  'grpc-status',
  'grpc-message',
];

/** The table: each name as spelled above and in lower case (HTTP/2 and many servers send lower case). */
export const NAMES: readonly string[] = [...new Set([...CANONICAL, ...CANONICAL.map((n) => n.toLowerCase())])];
export const LOWER: readonly string[] = NAMES.map((n) => n.toLowerCase());

/**
 * Candidates by a hash of the length and three bytes (first, middle, last), a slot holding up to
 * two indexes (+1; 0 is empty). Two names of one slot are both compared; the table has no chains.
 */
const SLOTS = 1024;
const TABLE = new Int16Array(SLOTS * 2);
function shape(len: number, first: number, middle: number, last: number): number {
  return (len * 97 + first * 31 + middle * 7 + last) & (SLOTS - 1);
}
for (let i = 0; i < NAMES.length; i++) {
  const n = NAMES[i];
  const at = shape(n.length, n.charCodeAt(0), n.charCodeAt(n.length >> 1), n.charCodeAt(n.length - 1)) * 2;
  if (TABLE[at] === 0) TABLE[at] = i + 1;
  else if (TABLE[at + 1] === 0) TABLE[at + 1] = i + 1;
  else throw new Error(`header-names: three names in one slot (${n})`);
}

/** The index in NAMES of the name these bytes spell exactly, or -1. */
export function knownName(b: Uint8Array): number {
  const len = b.length;
  if (len === 0) return -1;
  const at = shape(len, b[0], b[len >> 1], b[len - 1]) * 2;
  const first = TABLE[at] - 1;
  if (first >= 0 && spells(b, NAMES[first])) return first;
  const second = TABLE[at + 1] - 1;
  if (second >= 0 && spells(b, NAMES[second])) return second;
  return -1;
}

function spells(b: Uint8Array, name: string): boolean {
  if (name.length !== b.length) return false;
  for (let i = 0; i < b.length; i++) if (b[i] !== name.charCodeAt(i)) return false;
  return true;
}
