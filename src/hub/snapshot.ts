import { createHash } from 'node:crypto';
import { withoutTargets, type HubConfig } from './config.js';
import { MANAGED_KINDS, type ManagedResources, type Snapshot, type SnapshotTrust } from './protocol.js';
import { expandVirtualDestination, selects, type FleetMember } from './virtual-destinations.js';

/** A resource without targets applies to every gateway; otherwise each target label must match. */
export function targets(resource: { targets?: Record<string, string> }, labels: Record<string, string>): boolean {
  return !resource.targets || selects(resource.targets, labels);
}

/**
 * Exactly the resources that target `self`, with its virtual destinations expanded, and the fleet's
 * trust (when the hub has a CA). The hash covers both: a rotation step changes what is sent.
 */
export function buildSnapshot(
  config: HubConfig,
  version: number,
  self: FleetMember,
  fleet: FleetMember[],
  trust?: SnapshotTrust,
): Snapshot {
  const labels = self.report.labels;
  const resources = Object.fromEntries(
    MANAGED_KINDS.map((k) => [k, config[k].filter((r) => targets(r, labels)).map(withoutTargets)]),
  ) as unknown as ManagedResources;
  for (const vd of config.virtualDestinations) {
    if (!targets(vd, labels)) continue;
    const { routes, clusters } = expandVirtualDestination(vd, self, fleet);
    resources.routes.push(...routes);
    resources.clusters.push(...clusters);
  }
  const hash = createHash('sha256')
    .update(JSON.stringify(trust ? [resources, trust] : resources))
    .digest('hex')
    .slice(0, 16);
  return trust ? { version, hash, resources, trust } : { version, hash, resources };
}
