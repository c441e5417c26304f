import type { Host } from '../../cluster/host.js';
import { murmur3 } from '../../common/hash.js';
import { acceptOrNext, type PolicyFactory } from './policy.js';

const KETAMA_POINTS = 160;

/**
 * Ring hash (ketama): each host gets `perWeight x weight` ring entries, where perWeight is 160 (ketama's
 * points per server) or more when needed to reach minRingSize, and the ring is capped at maxRingSize. A
 * key maps to the first entry clockwise (binary search). Because a host's entries do not depend on the
 * other hosts (while the ring is above minRingSize), removing one of N hosts moves only its ~1/N of the
 * keys; Envoy rescales every host to the ring size instead, which moves somewhat more.
 */
export const ringHash: PolicyFactory = (hosts, config, rng) => {
  if (hosts.length === 0) return { pick: () => undefined };
  const totalWeight = hosts.reduce((s, h) => s + h.weight, 0);
  const perWeight = Math.min(Math.max(KETAMA_POINTS, Math.ceil(config.ringHash.minRingSize / totalWeight)), Math.floor(config.ringHash.maxRingSize / totalWeight));
  const entries: Array<{ hash: number; host: Host }> = [];
  for (const h of hosts) {
    const n = Math.max(1, perWeight * h.weight);
    for (let i = 0; i < n; i++) entries.push({ hash: murmur3(`${h.address}_${i}`), host: h });
  }
  entries.sort((a, b) => a.hash - b.hash);
  const hashes = Uint32Array.from(entries.map((e) => e.hash));
  const owners = entries.map((e) => e.host);
  return {
    pick(ctx) {
      const key = ctx?.hashKey !== undefined ? murmur3(ctx.hashKey) : Math.floor(rng.random() * 0x100000000);
      let lo = 0;
      let hi = hashes.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (hashes[mid] < key) lo = mid + 1;
        else hi = mid;
      }
      const owner = owners[lo === hashes.length ? 0 : lo];
      return acceptOrNext(hosts, owner, ctx);
    },
  };
};
