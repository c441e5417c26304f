import type { Host } from '../../cluster/host.js';
import { EdfScheduler } from '../edf.js';
import { acceptOrNext, type PolicyFactory } from './policy.js';

/**
 * Least request, as Envoy. Equal weights: `choiceCount` random draws (with replacement, default 2:
 * power of two choices), the one with the fewest active requests wins. Unequal weights: EDF where a
 * host re-enters with weight / (active + 1)^activeRequestBias (weight 2 with 4 active, bias 1 -> 0.4).
 */
export const leastRequest: PolicyFactory = (hosts, config, rng) => {
  if (hosts.length === 0) return { pick: () => undefined };
  const bias = config.activeRequestBias;
  if (!hosts.every((h) => h.weight === hosts[0].weight)) {
    const edf = new EdfScheduler<Host>();
    const dynamic = (h: Host) => (bias === 0 ? h.weight : h.weight / (h.activeRequests + 1) ** bias);
    for (const h of hosts) edf.add(h, dynamic(h));
    return { pick: (ctx) => acceptOrNext(hosts, edf.pick(dynamic)!, ctx) };
  }
  const choices = config.choiceCount;
  return {
    pick(ctx) {
      let best: Host | undefined;
      for (let i = 0; i < choices; i++) {
        const h = hosts[Math.floor(rng.random() * hosts.length)];
        if (ctx?.accept && !ctx.accept(h) && hosts.length > 1) continue;
        if (!best || h.activeRequests < best.activeRequests) best = h;
      }
      return best ?? acceptOrNext(hosts, hosts[Math.floor(rng.random() * hosts.length)], ctx);
    },
  };
};
