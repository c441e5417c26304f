import type { Host } from '../../cluster/host.js';
import type { LbConfig, PickContext } from '../types.js';
import type { Rng } from '../../common/clock.js';

/** Selects a host from one fixed set (one priority, one health bucket, maybe one locality). */
export interface HostSelector {
  pick(ctx: PickContext | undefined): Host | undefined;
}

/**
 * Hands back a table (ring, maglev table) built for exactly this host list (same Host objects, same
 * order) and weights by the previous LB build of the same cluster, or builds it. A health change then
 * rebuilds only the host sets it touched.
 */
export interface TableCache {
  get<T>(kind: string, hosts: readonly Host[], weights: ArrayLike<number> | undefined, build: () => T): T;
}

/**
 * A load-balancing policy: builds a selector for a host set. Built when hosts or health change.
 * `weights` (parallel to `hosts`, positive reals) overrides the host weights; only the consistent-hash
 * policies take it, for locality-weighted ring_hash / maglev (host weight x locality weight share).
 * The consistent-hash policies also take a `cache` of the previous build's tables.
 */
export type PolicyFactory = (
  hosts: readonly Host[],
  config: LbConfig,
  rng: Rng,
  weights?: ArrayLike<number>,
  cache?: TableCache,
) => HostSelector;

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
