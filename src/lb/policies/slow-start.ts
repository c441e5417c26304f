import type { Host } from '../../cluster/host.js';
import type { Clock } from '../../common/clock.js';
import { msOf } from '../../config/duration.js';
import { EdfScheduler } from '../edf.js';
import type { LbConfig } from '../types.js';
import { acceptOrNext, type PolicyFactory } from './policy.js';

/**
 * Envoy's slow start for round_robin and least_request: a host that joined the cluster, or came back
 * healthy from an active health check, within the last `window` gets its weight scaled by
 * max(minWeightPercent / 100, timeFactor ^ (1 / aggression)), timeFactor = max(age, 1 s) / window.
 * While some host of the set ramps up, picks follow an EDF schedule whose host weights are
 * re-evaluated as each host is re-queued (least_request also divides by (active + 1) ^ bias); once
 * the last window has ended, the policy's ordinary selector takes over.
 */
export function withSlowStart(
  base: PolicyFactory,
  ss: NonNullable<LbConfig['slowStart']>,
  clock: Clock,
): PolicyFactory {
  const windowMs = msOf(ss).window;
  const floor = ss.minWeightPercent / 100;
  const exponent = 1 / ss.aggression;
  return (hosts, config, rng) => {
    const steady = base(hosts, config, rng);
    let endsAt = 0;
    for (const h of hosts) if (h.healthySince > 0) endsAt = Math.max(endsAt, h.healthySince + windowMs);
    if (hosts.length < 2 || endsAt <= clock.now()) return steady;
    const bias = config.policy === 'least_request' ? config.activeRequestBias : 0;
    let now = clock.now();
    const weightOf = (h: Host): number => {
      const age = now - h.healthySince;
      const factor =
        h.healthySince === 0 || age >= windowMs ? 1 : Math.max(floor, (Math.max(age, 1000) / windowMs) ** exponent);
      const w = h.weight * factor;
      return bias === 0 ? w : w / (h.activeRequests + 1) ** bias;
    };
    const edf = new EdfScheduler<Host>();
    for (const h of hosts) edf.add(h, weightOf(h));
    return {
      pick(ctx) {
        now = clock.now();
        if (now >= endsAt) return steady.pick(ctx);
        return acceptOrNext(hosts, edf.pick(weightOf)!, ctx);
      },
    };
  };
}
