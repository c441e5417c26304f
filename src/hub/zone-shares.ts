import type { HubConfig } from './config.js';
import { targets } from './snapshot.js';
import type { FleetMember } from './virtual-destinations.js';

/** A hub cluster's zone-aware settings, as written (the hub keeps its document without gateway defaults). */
interface ZoneAwareWritten {
  enabled?: boolean;
  originShares?: Record<string, number>;
}

type HubCluster = HubConfig['clusters'][number];

type LbWritten = Record<string, unknown> & { zoneAware?: ZoneAwareWritten };

function lbOf(cluster: HubCluster): LbWritten | undefined {
  return (cluster as { lb?: LbWritten }).lb;
}

/**
 * The origin shares of a cluster for the gateways its `targets` select (all of them without
 * targets): how many of those gateways are in each zone, zones in sorted order so that the snapshot
 * hash does not depend on the order gateways registered in. Envoy reads the same thing from its
 * local cluster, the proxies that originate the traffic, counted per zone (HEALTHY_HOSTS_NUM).
 * Gateways without a zone are left out: their traffic's zone is unknown and they cannot route by
 * zone themselves. Undefined when no targeted gateway has a zone.
 *
 * Worked example: gateways in zone-a, zone-a, zone-b, zone-c -> { zone-a: 2, zone-b: 1, zone-c: 1 };
 * with upstream hosts 1 / 2 / 1 in those zones, zoneAwareSplit keeps 25/50 = 50 % of zone-a's traffic
 * local and sends the rest to zone-b, the only zone with residual capacity (50 % - 25 %).
 */
export function fleetOriginShares(
  cluster: { targets?: Record<string, string> },
  fleet: readonly FleetMember[],
): Record<string, number> | undefined {
  const counts = new Map<string, number>();
  for (const { report } of fleet) {
    const zone = report.locality.zone;
    if (!zone || !targets(cluster, report.labels)) continue;
    counts.set(zone, (counts.get(zone) ?? 0) + 1);
  }
  if (counts.size === 0) return undefined;
  return Object.fromEntries([...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * The fleet document with fleet-derived `originShares` filled into every cluster that enables
 * zone-aware routing without writing them (written shares always win). `fleet` is the gateways that
 * count as origins: the registered, unrevoked ones (Fleet#members), not only the connected ones, so
 * a watch that drops and returns (a hub restart, a network blip, a switch of hub replica) changes
 * nobody's snapshot while that gateway keeps serving traffic with its last one. The shares are the
 * same for every gateway a cluster targets, so this runs once per fleet change, not once per gateway.
 * Returns `config` itself when no cluster derives shares.
 */
export function withFleetOriginShares(config: HubConfig, fleet: readonly FleetMember[]): HubConfig {
  if (!config.clusters.some(derivesShares)) return config;
  const clusters = config.clusters.map((cluster) => {
    if (!derivesShares(cluster)) return cluster;
    const originShares = fleetOriginShares(cluster, fleet);
    if (!originShares) return cluster;
    const lb = lbOf(cluster);
    return { ...cluster, lb: { ...lb, zoneAware: { ...lb?.zoneAware, originShares } } };
  });
  return { ...config, clusters };
}

function derivesShares(cluster: HubCluster): boolean {
  const zoneAware = lbOf(cluster)?.zoneAware;
  return zoneAware?.enabled === true && zoneAware.originShares === undefined;
}
