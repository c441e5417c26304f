/**
 * The wire protocol between the management server (hub) and gateways (spokes).
 *
 * A gateway POSTs reports, holds one server-sent-events watch open, and POSTs an ack or a nack for
 * every snapshot it receives. Snapshots are state of the world (every resource that targets the
 * gateway), so a reconnect needs no replay: the next snapshot replaces whatever came before.
 */

import type { Locality } from '../cluster/host.js';

/** One local service instance: an endpoint of one of the gateway's own clusters. */
export interface ServiceInstance {
  cluster: string;
  address: string;
  labels: Record<string, string>;
  healthy: boolean;
}

/** What a gateway tells the hub about itself (POST /v1/gateways/{id}/report). */
export interface GatewayReport {
  labels: Record<string, string>;
  locality: Locality;
  /** Address other clusters' gateways use to reach this one's east-west listener (mTLS). */
  eastWestAddress?: string;
  instances: ServiceInstance[];
  /** The gateway's traffic so far, for the hub's fleet metrics (GET /fleet/metrics). */
  summary?: FleetSummary;
}

/**
 * Cumulative numbers of one route or one cluster since the gateway started. `buckets` holds the count
 * of requests per latency bucket (not cumulative): `buckets[i]` counts latencies in
 * (bounds[i-1], bounds[i]] and the last entry those above every bound, so it has `bounds.length + 1`
 * entries and they sum to the requests timed.
 */
export interface TrafficSeries {
  name: string;
  requests: number;
  /** Requests answered 5xx, whether by the upstream or by the gateway (no healthy upstream, timeout, reset). */
  errors: number;
  buckets: number[];
  /** Sum of the latencies counted in `buckets`, in seconds. */
  latencySum: number;
}

/**
 * What a gateway's reports carry for the fleet metrics: bounded in size whatever the route count (the
 * busiest FLEET_SERIES_MAX routes and clusters, the rest folded into one `_other` series), computed at
 * report time from the metrics the workers already keep.
 */
export interface FleetSummary {
  /** The gateway's report interval: the hub drops a summary not refreshed within a few of them. */
  intervalSeconds: number;
  /** Upper bounds (seconds) of the latency buckets every series here uses. */
  bounds: number[];
  routes: TrafficSeries[];
  clusters: Array<TrafficSeries & { ejected: number }>;
  /** The hub snapshot version the gateway applied, when it applied one. */
  snapshotVersion?: number;
  /** When the gateway's SVID expires (unix seconds), when it has one from the hub. */
  svidExpiry?: number;
}

/** Routes (and clusters) a summary names one by one; the rest are summed into FLEET_OTHER. */
export const FLEET_SERIES_MAX = 50;
/** Latency bucket bounds a summary may carry (the gateway's histograms have 13). */
export const FLEET_BOUNDS_MAX = 32;
/** The name of the series that sums the routes (or clusters) beyond FLEET_SERIES_MAX. */
export const FLEET_OTHER = '_other';

/** Managed resources for one gateway, by kind, each a list of named resources. */
export interface ManagedResources {
  routes: Array<Record<string, unknown> & { name: string }>;
  clusters: Array<Record<string, unknown> & { name: string }>;
  rateLimits: Array<Record<string, unknown> & { name: string }>;
}

export const MANAGED_KINDS = ['routes', 'clusters', 'rateLimits'] as const;
export type ManagedKind = (typeof MANAGED_KINDS)[number];

/**
 * What a gateway trusts, from a hub with a mesh CA: the bundle (PEM) its listeners and east-west
 * clusters verify peers with, the fingerprint of the root that signs now (an SVID another root signed
 * is renewed at once: a CA rotation's step 2), and the gateways the hub revoked (their SVIDs are
 * refused by every peer, valid or not).
 */
export interface SnapshotTrust {
  bundle: string;
  signer: string;
  revokedGateways: string[];
}

/** One SSE `snapshot` event. `version` is the hub config version; `hash` names the content. */
export interface Snapshot {
  version: number;
  hash: string;
  resources: ManagedResources;
  trust?: SnapshotTrust;
}

/** POST /v1/gateways/{id}/ack */
export interface Ack {
  version: number;
  hash: string;
  ok: boolean;
  errors?: Array<{ path: string; message: string }>;
}

/**
 * Header on a gateway's watch and ack requests: a random id per gateway process, so the hub tracks
 * what each replica of one gateway id acknowledged.
 */
export const REPLICA_HEADER = 'x-meridian-replica';

/** Header on requests one gateway sends to another's east-west listener: route locally, never onward. */
export const EAST_WEST_HEADER = 'x-meridian-east-west';

/**
 * Name prefix of the clusters and routes the hub generates for virtual destinations. A generated
 * cluster with `upstreamTls` reaches other gateways' east-west listeners: the receiving gateway fills
 * in its own client credentials.
 */
export const VD_PREFIX = 'vd.';
