import type { Host } from '../../cluster/host.js';
import { EdfScheduler } from '../edf.js';
import { acceptOrNext, type PolicyFactory } from './policy.js';

/**
 * Weighted round robin: plain rotation when weights are equal (O(1)), EDF schedule otherwise
 * (O(log n)), as Envoy. Weights 3:1:1 give the repeating sequence a a b a c (deterministic).
 */
export const roundRobin: PolicyFactory = (hosts) => {
  if (hosts.length === 0) return { pick: () => undefined };
  if (hosts.every((h) => h.weight === hosts[0].weight)) {
    let next = 0;
    return {
      pick(ctx) {
        const h = hosts[next];
        next = next + 1 === hosts.length ? 0 : next + 1;
        return acceptOrNext(hosts, h, ctx);
      },
    };
  }
  const edf = new EdfScheduler<Host>();
  for (const h of hosts) edf.add(h, h.weight);
  return { pick: (ctx) => acceptOrNext(hosts, edf.pick()!, ctx) };
};
