import { hostHealth, type Host } from '../cluster/host.js';
import type { Rng } from '../common/clock.js';
import { murmur3 } from '../common/hash.js';
import { EdfScheduler } from './edf.js';
import { effectivePriorities, localityKey, localityWeight, zoneAwareSplit } from './locality.js';
import { computePriorityLoad, type PriorityLoad } from './priority-load.js';
import { POLICIES } from './policies/index.js';
import type { HostSelector, PolicyFactory, TableCache } from './policies/policy.js';
import { withSlowStart } from './policies/slow-start.js';
import type { LbBuildInput, LbConfig, LoadBalancer, PickContext } from './types.js';

interface Level {
  all: Host[];
  healthy: Host[];
  degraded: Host[];
}

const EMPTY: HostSelector = { pick: () => undefined };

/**
 * Build the load balancer of one cluster for its current host set and health: effective priorities,
 * Envoy's priority load / degraded / panic math, optional locality weighting or zone-aware routing,
 * then the configured policy per host set. Everything is derived here; pick() walks at most
 * 2 x priorities cumulative thresholds and one policy pick.
 */
export function createLoadBalancer(input: LbBuildInput): LoadBalancer {
  const { hosts, config, rng } = input;
  const hostPriority = effectivePriorities(hosts, config, input.localLocality, input.localLabels ?? {});
  const levels = splitLevels(hosts, hostPriority);
  const load = computePriorityLoad(
    levels.map((l) => ({ healthy: l.healthy.length, degraded: l.degraded.length, total: l.all.length })),
    config.overprovisioningFactor,
    config.panicThreshold,
  );
  const tables = config.policy === 'ring_hash' || config.policy === 'maglev' ? new BuildTables(config) : undefined;
  const base = POLICIES[config.policy];
  const tabled: PolicyFactory = tables ? (hs, cfg, r, weights) => base(hs, cfg, r, weights, tables) : base;
  const policy = config.slowStart ? withSlowStart(tabled, config.slowStart, input.clock) : tabled;
  const thresholds: number[] = [];
  const selectors: HostSelector[] = [];
  let cumulative = 0;
  // Selectors are built only for buckets with a share (a ring or maglev table is not free).
  const add = (share: number, sel: () => HostSelector) => {
    if (share <= 0) return;
    cumulative += share;
    thresholds.push(cumulative);
    selectors.push(sel());
  };
  levels.forEach((l, p) => {
    const inPanic = load.totalPanic || load.panic[p];
    add(load.healthy[p], () =>
      inPanic
        ? hostSet(l.all, l.all, config, policy, rng)
        : p === 0
          ? (zoneAware(l, input, policy) ?? hostSet(l.healthy, l.all, config, policy, rng))
          : hostSet(l.healthy, l.all, config, policy, rng),
    );
  });
  levels.forEach((l, p) =>
    add(load.degraded[p], () =>
      load.panic[p] ? hostSet(l.all, l.all, config, policy, rng) : hostSet(l.degraded, l.all, config, policy, rng),
    ),
  );
  tables?.commit();
  const state = stateOf(load, hostPriority);
  // Host sets without a share, built on a retry's first need: every host of the shared sets was tried.
  let spare: HostSelector[] | undefined;
  const spares = () =>
    (spare ??= levels.flatMap((l) =>
      [l.healthy, l.degraded].filter((hs) => hs.length > 0).map((hs) => hostSet(hs, l.all, config, policy, rng)),
    ));
  return {
    pick(ctx: PickContext | undefined): Host | undefined {
      if (selectors.length === 0) return undefined;
      const h =
        ctx?.hashKey !== undefined ? (murmur3(ctx.hashKey, 0x1234) % 100) + 1 : Math.floor(rng.random() * 100) + 1;
      let i = 0;
      while (i < thresholds.length - 1 && h > thresholds[i]) i++;
      const host = selectors[i].pick(ctx);
      return ctx?.accept && host && !ctx.accept(host)
        ? (acceptedElsewhere(selectors, i, ctx) ?? acceptedElsewhere(spares(), -1, ctx) ?? host)
        : host;
    },
    state: () => state,
  };
}

interface TableEntry {
  kind: string;
  hosts: readonly Host[];
  weights: ArrayLike<number> | undefined;
  value: unknown;
}

/** Per cluster config: the consistent-hash tables of its latest LB build. */
const latestTables = new WeakMap<LbConfig, TableEntry[]>();

/**
 * The table cache of one build: a host set identical to one of the previous build (same Host objects in
 * the same order, same weights) reuses its ring / maglev table, which depends on nothing else (the
 * config, hence ring and table sizes, is the map key). Only the tables this build uses are kept.
 */
class BuildTables implements TableCache {
  readonly #previous: TableEntry[];
  readonly #used: TableEntry[] = [];
  constructor(readonly config: LbConfig) {
    this.#previous = latestTables.get(config) ?? [];
  }

  get<T>(kind: string, hosts: readonly Host[], weights: ArrayLike<number> | undefined, build: () => T): T {
    let entry = this.#previous.find(
      (e) => e.kind === kind && sameHosts(e.hosts, hosts) && sameWeights(e.weights, weights),
    );
    if (!entry) entry = { kind, hosts: hosts.slice(), weights: weights && Float64Array.from(weights), value: build() };
    this.#used.push(entry);
    return entry.value as T;
  }

  commit(): void {
    latestTables.set(this.config, this.#used);
  }
}

function sameHosts(a: readonly Host[], b: readonly Host[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameWeights(a: ArrayLike<number> | undefined, b: ArrayLike<number> | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function splitLevels(hosts: readonly Host[], prio: number[]): Level[] {
  let n = 0;
  for (const p of prio) if (p + 1 > n) n = p + 1; // a loop: Math.max(...prio) overflows the stack past ~120k hosts
  const levels: Level[] = Array.from({ length: n }, () => ({ all: [], healthy: [], degraded: [] }));
  hosts.forEach((h, i) => {
    const l = levels[prio[i]];
    l.all.push(h);
    const health = hostHealth(h.flags);
    if (health === 'healthy') l.healthy.push(h);
    else if (health === 'degraded') l.degraded.push(h);
  });
  return levels;
}

/**
 * Selector over one host set. With locality-weighted LB, localities are picked by EDF on
 * weight x min(1, factor x eligible / total) (Envoy's effective locality weight), then the policy.
 * ring_hash and maglev instead get one ring / table over the whole host set (see hashWeights), so the
 * hash key alone decides the host.
 */
function hostSet(eligible: Host[], levelAll: Host[], cfg: LbConfig, policy: PolicyFactory, rng: Rng): HostSelector {
  if (eligible.length === 0) return EMPTY;
  if (!cfg.localityWeighted) return policy(eligible, cfg, rng);
  if (cfg.policy === 'ring_hash' || cfg.policy === 'maglev') {
    const w = hashWeights(eligible, levelAll, cfg);
    return w.hosts.length === 0 ? EMPTY : policy(w.hosts, cfg, rng, w.weights);
  }
  const groups = new Map<string, { eligible: Host[]; total: number; weight: number }>();
  for (const h of levelAll) {
    const key = localityKey(h.locality);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { eligible: [], total: 0, weight: localityWeight(cfg, h.locality) }));
    g.total++;
  }
  for (const h of eligible) groups.get(localityKey(h.locality))!.eligible.push(h);
  const edf = new EdfScheduler<HostSelector>();
  for (const g of groups.values()) {
    const effective = g.weight * Math.min(1, (cfg.overprovisioningFactor * g.eligible.length) / g.total);
    if (effective > 0) edf.add(policy(g.eligible, cfg, rng), effective);
  }
  if (edf.size === 0) return EMPTY;
  return { pick: (ctx) => edf.pick()!.pick(ctx) };
}

/**
 * Locality-weighted consistent hashing, as Envoy's ThreadAwareLoadBalancerBase (ring hash, maglev):
 * no per-request locality pick; each host's weight is normalized within its locality and multiplied
 * by the locality's weight, host_weight x locality_weight / Σ eligible host weights in the locality, and
 * one ring / table is built from those weights. A locality keeps its configured share however many of
 * its hosts are eligible (Envoy does not apply the overprovisioning adjustment here); a locality of
 * weight 0 or without eligible hosts gets nothing. Zone-aware routing does not apply.
 *
 * The weights are scaled by (Σ host weights of the level) / (Σ locality weights of the level), both
 * over all of the level's hosts, so the ring has about the size the plain ring would have and a
 * health change resizes only the affected locality's hosts (other hosts keep their ring points; about
 * 2/N of the keys move when 1 of N hosts fails, against 1/N without locality weights).
 */
function hashWeights(eligible: Host[], levelAll: Host[], cfg: LbConfig): { hosts: Host[]; weights: Float64Array } {
  const groups = new Map<string, { weight: number; eligibleWeight: number }>();
  let levelWeight = 0;
  let localityTotal = 0;
  for (const h of levelAll) {
    const key = localityKey(h.locality);
    let g = groups.get(key);
    if (!g) {
      groups.set(key, (g = { weight: localityWeight(cfg, h.locality), eligibleWeight: 0 }));
      localityTotal += g.weight;
    }
    if (g.weight > 0) levelWeight += h.weight;
  }
  const keys = eligible.map((h) => localityKey(h.locality));
  for (let i = 0; i < eligible.length; i++) groups.get(keys[i])!.eligibleWeight += eligible[i].weight;
  const scale = localityTotal > 0 ? levelWeight / localityTotal : 0;
  const hosts: Host[] = [];
  const weights: number[] = [];
  for (let i = 0; i < eligible.length; i++) {
    const g = groups.get(keys[i])!;
    if (g.weight <= 0) continue;
    hosts.push(eligible[i]);
    weights.push((eligible[i].weight * g.weight * scale) / g.eligibleWeight);
  }
  return { hosts, weights: Float64Array.from(weights) };
}

/** Zone-aware routing of P0's healthy hosts, or undefined when its preconditions do not hold. */
function zoneAware(level: Level, input: LbBuildInput, policy: PolicyFactory): HostSelector | undefined {
  const { config: cfg, rng } = input;
  if (!cfg.zoneAware.enabled || cfg.policy === 'ring_hash' || cfg.policy === 'maglev') return undefined;
  const byZone = new Map<string, Host[]>();
  for (const h of level.healthy) {
    let list = byZone.get(h.locality.zone);
    if (!list) byZone.set(h.locality.zone, (list = []));
    list.push(h);
  }
  const split = zoneAwareSplit(new Map([...byZone].map(([z, hs]) => [z, hs.length])), input.localLocality.zone, cfg);
  if (!split) return undefined;
  const local = policy(byZone.get(input.localLocality.zone)!, cfg, rng);
  const others = split.residual.map(([zone, capacity]) => ({ sel: policy(byZone.get(zone)!, cfg, rng), capacity }));
  const capacityTotal = others.reduce((s, o) => s + o.capacity, 0);
  return {
    pick(ctx) {
      if (others.length === 0 || rng.random() < split.local) return local.pick(ctx);
      if (capacityTotal <= 0) return others[Math.floor(rng.random() * others.length)].sel.pick(ctx);
      let x = rng.random() * capacityTotal;
      for (const o of others) if ((x -= o.capacity) < 0) return o.sel.pick(ctx);
      return others[others.length - 1].sel.pick(ctx);
    },
  };
}

function stateOf(load: PriorityLoad, hostPriority: number[]) {
  return {
    healthyPriorityLoad: load.healthy,
    degradedPriorityLoad: load.degraded,
    panic: load.panic,
    totalPanic: load.totalPanic,
    hostPriority,
  };
}

/**
 * A retry whose chosen host set holds only hosts already tried moves on to the next host sets in
 * priority order (then wraps), like Envoy's previous_priorities retry plugin. `from` -1 scans all.
 */
function acceptedElsewhere(selectors: HostSelector[], from: number, ctx: PickContext): Host | undefined {
  const n = selectors.length;
  for (let k = 1; k < (from < 0 ? n + 1 : n); k++) {
    const h = selectors[(from + k + n) % n].pick(ctx);
    if (h && ctx.accept!(h)) return h;
  }
  return undefined;
}
