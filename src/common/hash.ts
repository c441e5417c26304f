/**
 * MurmurHash3 (x86, 32-bit) of a string's UTF-16 code units: fast, well distributed, allocation-free.
 * Used for consistent hashing (ring hash, maglev); not for anything security-related.
 */
export function murmur3(key: string, seed = 0): number {
  let h = seed >>> 0;
  const len = key.length;
  let i = 0;
  for (; i + 1 < len; i += 2)
    h = murmurBlock(h, (key.charCodeAt(i) & 0xffff) | ((key.charCodeAt(i + 1) & 0xffff) << 16));
  if (i < len) h = murmurTail(h, key.charCodeAt(i) & 0xffff);
  return murmurFinal(h, len);
}

/** One murmur3 (x86_32) 4-byte block (two UTF-16 code units). */
export function murmurBlock(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** The trailing partial block (one code unit). */
export function murmurTail(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  return h ^ k;
}

/** Finalization mix for a key of `len` code units. */
export function murmurFinal(h: number, len: number): number {
  h ^= len * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
