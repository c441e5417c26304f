import type { Primary } from '../../process/primary.js';
import { ApiError } from '../api-error.js';
import { adminFlags, HostFlag, hostHealth } from '../../cluster/host.js';
import type { ToPrimary } from '../ipc/messages.js';

type StatsReply = Extract<ToPrimary, { t: 'stats-reply' }>;

const FLAG_NAMES: Array<[number, string]> = Object.entries(HostFlag).map(([k, v]) => [v, k.toLowerCase()]);

/** Extra per-host facts from primary-side components (outlier ejections, health checks). */
export type HostDetails = (cluster: string, address: string) => Record<string, unknown>;

/** Extra per-cluster facts (a discovery source's state: what it resolves, staleness, last error). */
export type ClusterDetails = (cluster: string) => Record<string, unknown>;

/**
 * `GET /clusters/{name}/status`: per endpoint the health flags (each reason separately), live
 * numbers summed over workers, how many workers' load balancers already see those flags
 * (`workersApplied`: a health check's or an ejection's verdict is broadcast to the workers; it has
 * reached them all when this equals `workersReporting`), plus the load balancer's priority loads and
 * panic state.
 */
export async function clusterStatus(
  primary: Primary,
  name: string,
  detailProviders: readonly HostDetails[],
  clusterDetails: readonly ClusterDetails[] = [],
) {
  const cluster = primary.live.clusters.find((c) => c.name === name);
  if (!cluster)
    throw new ApiError(404, 'not found', { error: 'not_found', message: `cluster "${name}" does not exist` });
  const replies = await primary.collect<StatsReply>('stats');
  const endpoints = cluster.endpoints.map((e) => {
    const flags = adminFlags(e.health) | (primary.overlay[name]?.[e.address] ?? 0);
    let active = 0,
      requests = 0,
      errors = 0,
      workersApplied = 0;
    for (const r of replies) {
      const s = r.stats[name]?.[e.address];
      if (s) {
        active += s.active;
        requests += s.requests;
        errors += s.errors;
        if (s.flags === flags) workersApplied++;
      }
    }
    return {
      address: e.address,
      priority: e.priority,
      weight: e.weight,
      locality: e.locality,
      health: hostHealth(flags),
      flags: FLAG_NAMES.filter(([bit]) => flags & bit).map(([, n]) => n),
      activeRequests: active,
      requests,
      errors,
      workersApplied,
      ...Object.assign({}, ...detailProviders.map((d) => d(name, e.address))),
    };
  });
  return {
    name,
    version: primary.current.version,
    workersReporting: replies.length,
    lb: replies[0]?.lb?.[name],
    ...Object.assign({}, ...clusterDetails.map((d) => d(name))),
    endpoints,
  };
}
