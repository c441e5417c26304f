// PLACEHOLDER written by the lead so the core can run before helper-1 delivers; helper-1 overwrites this file.
import type { LbBuildInput, LoadBalancer, PickContext } from './types.js';
import { hostHealth, type Host } from '../cluster/host.js';

export function createLoadBalancer(input: LbBuildInput): LoadBalancer {
  const healthy = input.hosts.filter((h) => hostHealth(h.flags) === 'healthy');
  const set = healthy.length ? healthy : input.hosts;
  let i = 0;
  return {
    pick(ctx: PickContext | undefined): Host | undefined {
      for (let n = 0; n < set.length; n++) {
        const h = set[i++ % set.length];
        if (!ctx?.accept || ctx.accept(h)) return h;
      }
      return set[i++ % set.length];
    },
    state: () => ({ healthyPriorityLoad: [100], degradedPriorityLoad: [0], panic: [false], hostPriority: [] }),
  };
}
