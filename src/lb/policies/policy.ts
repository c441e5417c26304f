import type { Host } from '../../cluster/host.js';
import type { LbConfig, PickContext } from '../types.js';
import type { Rng } from '../../common/clock.js';

/** Selects a host from one fixed set (one priority, one health bucket, maybe one locality). */
export interface HostSelector {
  pick(ctx: PickContext | undefined): Host | undefined;
}

/** A load-balancing policy: builds a selector for a host set. Built when hosts or health change. */
export type PolicyFactory = (hosts: readonly Host[], config: LbConfig, rng: Rng) => HostSelector;

/**
 * When the policy's choice is rejected by `accept` (a retry avoiding the previous host), take the
 * next acceptable host after it; if none is acceptable, keep the policy's choice.
 */
export function acceptOrNext(hosts: readonly Host[], chosen: Host, ctx: PickContext | undefined): Host {
  if (!ctx?.accept || ctx.accept(chosen)) return chosen;
  const start = hosts.indexOf(chosen);
  for (let i = 1; i < hosts.length; i++) {
    const h = hosts[(start + i) % hosts.length];
    if (ctx.accept(h)) return h;
  }
  return chosen;
}
