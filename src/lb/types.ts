import type { Clock, Rng } from '../common/clock.js';
import type { Host, Locality } from '../cluster/host.js';
import type { DurationText } from '../config/duration.js';

/** Per-request input to a pick. Allocated once per request by the proxy; policies must not retain it. */
export interface PickContext {
  /** Hash key for ring_hash/maglev (header, cookie or source IP value), or undefined. */
  hashKey?: string;
  /** Return false to skip a host (e.g. the previous attempt's host on retry). */
  accept?: (host: Host) => boolean;
}

/** The `lb` section of a cluster, with defaults applied by the config schema. */
export interface LbConfig {
  policy: 'round_robin' | 'least_request' | 'random' | 'ring_hash' | 'maglev';
  overprovisioningFactor: number; // 1.4 = 140%
  panicThreshold: number; // percent, 0 disables
  priorityFromLocality: boolean;
  failoverPriority?: string[];
  localityWeighted: boolean;
  localityWeights?: Array<{ locality: Partial<Locality>; weight: number }>;
  zoneAware: { enabled: boolean; minClusterSize: number; originShares?: Record<string, number> };
  hashOn?: { header?: string; cookie?: string; sourceIp?: boolean };
  choiceCount: number; // least_request
  activeRequestBias: number; // least_request
  ringHash: { minRingSize: number; maxRingSize: number };
  maglev: { tableSize: number };
  /** round_robin and least_request: new and newly healthy hosts ramp up over `window` (read in ms with msOf). */
  slowStart?: { window: DurationText; aggression: number; minWeightPercent: number };
}

/** What the LB builder gets: the hosts of one cluster (all priorities) plus the gateway's environment. */
export interface LbBuildInput {
  hosts: readonly Host[];
  config: LbConfig;
  /** The gateway's own locality (zone-aware routing, priorityFromLocality). */
  localLocality: Locality;
  /** The gateway's own labels (failoverPriority). */
  localLabels?: Readonly<Record<string, string>>;
  clock: Clock;
  rng: Rng;
}

/** Derived state exposed for `GET /clusters/{name}/status` and tests. */
export interface LbState {
  healthyPriorityLoad: number[];
  degradedPriorityLoad: number[];
  panic: boolean[];
  /** Effective priority of each host index (after priorityFromLocality). */
  hostPriority: number[];
  /** All priorities in panic: load follows host counts. */
  totalPanic: boolean;
}

/**
 * A load balancer built for one host set and health state. Rebuilt (not mutated) when hosts or
 * flags change; pick() is O(1) or O(log n) and allocation-free on the happy path.
 */
export interface LoadBalancer {
  pick(ctx: PickContext | undefined): Host | undefined;
  state(): LbState;
}
