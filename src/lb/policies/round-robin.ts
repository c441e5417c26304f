import type { Host } from '../../cluster/host.js';
import { EdfScheduler } from '../edf.js';
import { acceptOrNext, type PolicyFactory } from './policy.js';

/**
 * Weighted round robin: plain rotation when weights are equal (O(1)), EDF schedule otherwise
 * (O(log n)), as Envoy. Weights 3:1:1 give the repeating sequence a a b c a (deterministic).
 *
 * Every build starts at a random point of the rotation, drawn from the injected rng (Envoy seeds each
 * LB instance: the unweighted index starts at `seed`, the EDF schedule is created with `seed` picks).
 * Without it every worker would restart at the first host after each rebuild, all in lock-step.
 * Equal weights: start index floor(r x n). Unequal: the schedule after floor(r x Σ weights) picks,
 * i.e. a uniformly random position within one full round.
 */
export const roundRobin: PolicyFactory = (hosts, _config, rng) => {
  if (hosts.length === 0) return { pick: () => undefined };
  if (hosts.every((h) => h.weight === hosts[0].weight)) {
    let next = Math.min(hosts.length - 1, Math.floor(rng.random() * hosts.length));
    return {
      pick(ctx) {
        const h = hosts[next];
        next = next + 1 === hosts.length ? 0 : next + 1;
        return acceptOrNext(hosts, h, ctx);
      },
    };
  }
  const weights = hosts.map((h) => h.weight);
  let total = 0;
  for (const w of weights) total += w;
  const edf = EdfScheduler.withPicks<Host>(hosts, weights, Math.floor(rng.random() * total));
  return { pick: (ctx) => acceptOrNext(hosts, edf.pick()!, ctx) };
};
