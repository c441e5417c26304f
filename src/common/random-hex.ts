import { randomFillSync } from 'node:crypto';

/*
 * Random ids on the request path (trace and span ids) come from a pool refilled 4 KiB at a time:
 * one getrandom call per ~170 trace contexts instead of one or two per request.
 */
const POOL = Buffer.allocUnsafe(4096);
let offset = POOL.length;

/** `bytes` random bytes as lower-case hex. */
export function randomHex(bytes: number): string {
  if (offset + bytes > POOL.length) {
    randomFillSync(POOL);
    offset = 0;
  }
  const hex = POOL.toString('hex', offset, offset + bytes);
  offset += bytes;
  return hex;
}
