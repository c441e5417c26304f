import { acceptOrNext, type PolicyFactory } from './policy.js';

/** Uniformly random host (Envoy's random LB ignores weights). */
export const random: PolicyFactory = (hosts, _config, rng) => ({
  pick(ctx) {
    if (hosts.length === 0) return undefined;
    return acceptOrNext(hosts, hosts[Math.floor(rng.random() * hosts.length)], ctx);
  },
});
