import type { VirtualDestination } from './config.js';
import {
  EAST_WEST_HEADER,
  VD_PREFIX,
  type GatewayReport,
  type ManagedResources,
  type ServiceInstance,
} from './protocol.js';

/** A gateway as the hub knows it: its fleet id and last report. */
export interface FleetMember {
  id: string;
  report: GatewayReport;
}

type Resource = Record<string, unknown> & { name: string };

/** True when every selector label is present with the same value. */
export function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

/**
 * Failover tier of a gateway as seen from `self`: lower is preferred. Active-active orders by
 * locality (self, same zone, same region, elsewhere); active-passive by the `cluster` label's
 * position in `failover.order` (gateways not listed come last).
 */
function tierOf(vd: VirtualDestination, self: FleetMember, other: FleetMember): number {
  const order = vd.failover.order;
  if (order) {
    const i = order.indexOf(other.report.labels.cluster ?? '');
    return i === -1 ? order.length : i;
  }
  if (other.id === self.id) return 0;
  const a = self.report.locality;
  const b = other.report.locality;
  if (a.region !== b.region) return 3;
  return a.zone === b.zone ? 1 : 2;
}

interface Tier {
  rank: number;
  members: Array<{ member: FleetMember; instances: ServiceInstance[] }>;
}

function tiers(vd: VirtualDestination, self: FleetMember, fleet: FleetMember[]): Tier[] {
  const byRank = new Map<number, Tier>();
  for (const member of fleet) {
    if (member.id !== self.id && !member.report.eastWestAddress) continue;
    const instances = member.report.instances.filter((i) => selects(vd.selector, i.labels));
    if (instances.length === 0) continue;
    const rank = tierOf(vd, self, member);
    let tier = byRank.get(rank);
    if (!tier) byRank.set(rank, (tier = { rank, members: [] }));
    tier.members.push({ member, instances });
  }
  return [...byRank.values()].sort((x, y) => x.rank - y.rank);
}

function localCluster(vd: VirtualDestination, self: FleetMember, instances: ServiceInstance[]): Resource {
  return {
    name: `${VD_PREFIX}${vd.name}.local`,
    endpoints: instances.map((i) => ({
      address: i.address,
      labels: i.labels,
      locality: self.report.locality,
      ...(i.healthy ? {} : { health: 'unhealthy' }),
    })),
    ...(vd.healthCheck ? { healthCheck: vd.healthCheck } : {}),
  };
}

/**
 * Remote gateways of one tier: their east-west addresses, weighted by healthy instance count and
 * marked unhealthy when they have none, reached over TLS with the destination as SNI (the receiving
 * gateway fills in its client credentials).
 */
function remoteCluster(vd: VirtualDestination, rank: number, tier: Tier): Resource {
  return {
    name: `${VD_PREFIX}${vd.name}.tier${rank}`,
    endpoints: tier.members.map(({ member, instances }) => {
      const healthy = instances.filter((i) => i.healthy).length;
      return {
        address: member.report.eastWestAddress,
        weight: Math.max(1, healthy),
        locality: member.report.locality,
        labels: {
          gateway: member.id,
          ...(member.report.labels.cluster ? { cluster: member.report.labels.cluster } : {}),
        },
        ...(healthy ? {} : { health: 'unhealthy' }),
      };
    }),
    upstreamTls: { sni: vd.host },
    outlierDetection: {
      consecutiveGatewayFailure: 3,
      enforcingConsecutiveGatewayFailure: 100,
      interval: '1s',
      baseEjectionTime: '5s',
      maxEjectionPercent: 100,
    },
  };
}

function unavailable(vd: VirtualDestination, name: string, match: Record<string, unknown>): Resource {
  return { name, match, directResponse: { status: 503, body: `no instances of ${vd.host}\n` } };
}

/**
 * Expand one virtual destination for one gateway into managed routes and clusters: an aggregate
 * cluster whose members are failover tiers (so Envoy's priority spill moves traffic tier by tier),
 * an outbound route, and an inbound route for requests from other gateways that only ever uses
 * local instances, so a request crosses at most one cluster boundary.
 */
export function expandVirtualDestination(
  vd: VirtualDestination,
  self: FleetMember,
  fleet: FleetMember[],
): Pick<ManagedResources, 'routes' | 'clusters'> {
  const routes: Resource[] = [];
  const clusters: Resource[] = [];
  const hostMatch = { hosts: [vd.host] };
  const inboundMatch = { ...hostMatch, headers: [{ name: EAST_WEST_HEADER, present: true }] };
  const all = tiers(vd, self, fleet);
  const localTier = all.find((t) => t.members.some((m) => m.member.id === self.id));
  const local = localTier?.members.find((m) => m.member.id === self.id);
  if (local) clusters.push(localCluster(vd, self, local.instances));
  if (self.report.eastWestAddress) {
    // First, so that it wins the tie with the outbound route (same host, same path).
    routes.push(
      local
        ? { name: `${VD_PREFIX}${vd.name}.inbound`, match: inboundMatch, cluster: `${VD_PREFIX}${vd.name}.local` }
        : unavailable(vd, `${VD_PREFIX}${vd.name}.inbound`, inboundMatch),
    );
  }
  const members: string[] = [];
  for (const tier of all) {
    const remote = tier.members.filter((m) => m.member.id !== self.id);
    if (tier === localTier) members.push(`${VD_PREFIX}${vd.name}.local`);
    if (remote.length === 0) continue;
    const c = remoteCluster(vd, tier.rank, { rank: tier.rank, members: remote });
    clusters.push(c);
    members.push(c.name);
  }
  if (members.length === 0) {
    routes.push(unavailable(vd, `${VD_PREFIX}${vd.name}`, hostMatch));
    return { routes, clusters };
  }
  clusters.push({ name: `${VD_PREFIX}${vd.name}`, kind: 'aggregate', clusters: members, endpoints: [] });
  routes.push({
    name: `${VD_PREFIX}${vd.name}`,
    match: hostMatch,
    cluster: `${VD_PREFIX}${vd.name}`,
    requestHeaders: { set: { [EAST_WEST_HEADER]: self.id } },
    retry: { attempts: 2, on: ['connect-failure', 'reset', 'gateway-error'] },
  });
  return { routes, clusters };
}

/** One gateway holding instances of a virtual destination, as the failover view shows it. */
export interface FailoverMember {
  id: string;
  cluster: string | undefined;
  locality: FleetMember['report']['locality'];
  healthy: number;
  instances: number;
}

/**
 * Where one virtual destination sends the traffic of some gateways (`from`): its failover tiers in
 * order, from the same ranking the expansion above gives those gateways, and the first tier with a
 * healthy instance (`activeTier`, -1 when none has one and requests get the 503), which is where
 * priority spill sends traffic while that tier is healthy enough.
 */
export interface FailoverPath {
  from: string[];
  tiers: FailoverMember[][];
  activeTier: number;
}

/**
 * The failover paths of `vd` for every gateway it targets, gateways with the same path grouped, so
 * that 100 gateways do not make 100 rows where they agree: an active-passive order gives one path for
 * the fleet, locality ranking one per gateway holding instances and one per zone for the others.
 */
export function failoverPaths(vd: VirtualDestination, fleet: FleetMember[]): FailoverPath[] {
  const byShape = new Map<string, FailoverPath>();
  for (const self of fleet) {
    if (vd.targets && !selects(vd.targets, self.report.labels)) continue;
    const path = tiers(vd, self, fleet).map((tier) =>
      tier.members.map(({ member, instances }) => ({
        id: member.id,
        cluster: member.report.labels.cluster,
        locality: member.report.locality,
        healthy: instances.filter((i) => i.healthy).length,
        instances: instances.length,
      })),
    );
    const shape = JSON.stringify(path);
    const known = byShape.get(shape);
    if (known) known.from.push(self.id);
    else
      byShape.set(shape, { from: [self.id], tiers: path, activeTier: path.findIndex((t) => t.some((m) => m.healthy)) });
  }
  return [...byShape.values()];
}
