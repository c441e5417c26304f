import { describe, it, expect } from 'vitest';
import { randomHex, randomUuid } from '../../../src/common/random-hex.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('random ids from the pool', () => {
  it('makes version-4 UUIDs, all different, across several refills of the pool', () => {
    const ids = Array.from({ length: 1000 }, () => randomUuid()); // 16 bytes each: ~4 refills of 4 KiB
    for (const id of ids) expect(id).toMatch(UUID_V4);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('spreads the digits: every hex digit appears at every random position', () => {
    const seen = Array.from({ length: 36 }, () => new Set<string>());
    for (let n = 0; n < 2000; n++) {
      const id = randomUuid();
      for (let i = 0; i < 36; i++) seen[i].add(id[i]);
    }
    for (let i = 0; i < 36; i++) {
      if ([8, 13, 18, 23].includes(i)) expect([...seen[i]]).toEqual(['-']);
      else if (i === 14) expect([...seen[i]]).toEqual(['4']);
      else if (i === 19)
        expect(seen[i].size).toBe(4); // 8, 9, a, b
      else expect(seen[i].size).toBe(16);
    }
  });

  it('makes hex of the asked length', () => {
    expect(randomHex(16)).toMatch(/^[0-9a-f]{32}$/);
    expect(randomHex(8)).toMatch(/^[0-9a-f]{16}$/);
    expect(randomHex(8)).not.toBe(randomHex(8));
  });
});
