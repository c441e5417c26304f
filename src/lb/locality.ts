import type { Host, Locality } from '../cluster/host.js';
import type { LbConfig } from './types.js';

/**
 * Istio-style distance from the gateway: 0 same region, zone and subzone; 1 same region and zone;
 * 2 same region; 3 anything else.
 */
export function localityDistance(local: Locality, other: Locality): number {
  if (other.region !== local.region) return 3;
  if (other.zone !== local.zone) return 2;
  return other.subzone === local.subzone ? 0 : 1;
}

/**
 * Effective priority of each host. With `priorityFromLocality`, the locality distance; with
 * `failoverPriority` label keys, hosts matching the gateway's labels on more leading keys come first
 * (Istio's failoverPriority), locality distance breaking ties. The distinct values are then compacted
 * to 0..n-1, so there are no empty levels.
 */
export function effectivePriorities(
  hosts: readonly Host[],
  cfg: LbConfig,
  local: Locality,
  localLabels: Readonly<Record<string, string>>,
): number[] {
  if (!cfg.priorityFromLocality && !cfg.failoverPriority?.length) return compact(hosts.map((h) => h.priority));
  const keys = cfg.failoverPriority ?? [];
  const raw = hosts.map((h) => {
    let matched = 0;
    while (
      matched < keys.length &&
      h.labels[keys[matched]] !== undefined &&
      h.labels[keys[matched]] === localLabels[keys[matched]]
    )
      matched++;
    const labelRank = keys.length - matched;
    const localityRank = cfg.priorityFromLocality ? localityDistance(local, h.locality) : h.priority;
    return labelRank * 1000 + localityRank;
  });
  return compact(raw);
}

function compact(values: number[]): number[] {
  const distinct = [...new Set(values)].sort((a, b) => a - b);
  const rank = new Map(distinct.map((v, i) => [v, i]));
  return values.map((v) => rank.get(v)!);
}

/** Stable key of a locality ("region/zone/subzone"). */
export function localityKey(l: Locality): string {
  return `${l.region}/${l.zone}/${l.subzone}`;
}

/** Configured locality weight: the first `localityWeights` entry whose set fields all match; 1 without a list. */
export function localityWeight(cfg: LbConfig, l: Locality): number {
  if (!cfg.localityWeights) return 1;
  for (const w of cfg.localityWeights) {
    const m = w.locality;
    if (
      (m.region === undefined || m.region === l.region) &&
      (m.zone === undefined || m.zone === l.zone) &&
      (m.subzone === undefined || m.subzone === l.subzone)
    )
      return w.weight;
  }
  return 0;
}

/**
 * Zone-aware routing split for P0 (Envoy's zone_aware.rst). Shares are fractions of healthy hosts per
 * zone upstream and of the originating traffic per zone. Returns undefined when zone routing does not
 * apply (fewer than minClusterSize healthy hosts, fewer than 2 zones, no origin shares, no local hosts).
 * Worked example: origin (40, 40, 20) %, upstream (25, 50, 25) % from zone 0 -> local 62.5 %, the rest
 * split 2:1 by residual capacity (10 % and 5 %) -> 62.5 / 25 / 12.5.
 */
export function zoneAwareSplit(
  healthyByZone: Map<string, number>,
  localZone: string,
  cfg: LbConfig,
): { local: number; residual: Array<[string, number]> } | undefined {
  const za = cfg.zoneAware;
  if (!za.enabled || !za.originShares) return undefined;
  const total = [...healthyByZone.values()].reduce((a, b) => a + b, 0);
  if (total < za.minClusterSize || healthyByZone.size < 2 || !healthyByZone.get(localZone)) return undefined;
  const originTotal = Object.values(za.originShares).reduce((a, b) => a + b, 0);
  if (originTotal <= 0 || !za.originShares[localZone]) return undefined;
  const upstreamLocal = healthyByZone.get(localZone)! / total;
  const originLocal = za.originShares[localZone] / originTotal;
  if (upstreamLocal >= originLocal) return { local: 1, residual: [] };
  const residual: Array<[string, number]> = [];
  for (const [zone, n] of healthyByZone) {
    if (zone === localZone) continue;
    residual.push([zone, Math.max(0, n / total - (za.originShares[zone] ?? 0) / originTotal)]);
  }
  return { local: upstreamLocal / originLocal, residual };
}
