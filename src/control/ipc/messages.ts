import type { Config } from '../../config/schema/index.js';
import type { HealthOverlay } from '../../cluster/cluster-manager.js';
import type { LbState } from '../../lb/types.js';
import type { EndpointDelta } from '../../config/endpoint-delta.js';
import type { Outcome } from '../../outlier/outcome.js';

/** An outcome batch: cluster -> address -> ordered outcome codes since the last flush (see outlier/outcome.ts). */
export type OutcomeBatch = Record<string, Record<string, Outcome[]>>;

/** Per-host live numbers a worker reports for `GET /clusters/{name}/status`. */
/** Per cluster and endpoint address: a worker's live numbers and the health flags its load balancer sees. */
export type HostStats = Record<
  string,
  Record<string, { active: number; requests: number; errors: number; flags: number }>
>;

/**
 * A config for a worker to compile. `seq` numbers every change the publisher sends (snapshots and
 * endpoint deltas), `version` is the config version it belongs to. With `carried`, the clusters it
 * names are stubs (`{ name }`) to be taken from the worker's snapshot at `carried.base` (unchanged
 * since): a route change beside a 100,000-endpoint cluster does not ship or parse those endpoints.
 * Endpoint lists travel packed (config/endpoint-delta.ts: packConfig), as do a delta's upserts.
 */
export interface SnapshotMessage {
  t: 'snapshot';
  seq: number;
  version: number;
  config: Config;
  carried?: { base: number; clusters: string[] };
}

/** Endpoint sets changed and nothing else: applied to the worker's snapshot at `base` in place. */
export interface EndpointsMessage {
  t: 'endpoints';
  seq: number;
  base: number;
  version: number;
  delta: EndpointDelta;
}

/** Primary -> worker. */
export type ToWorker =
  | SnapshotMessage
  | EndpointsMessage
  | { t: 'overlay'; overlay: HealthOverlay }
  | { t: 'drain'; deadlineMs: number }
  | { t: 'stats'; id: number }
  | { t: 'metrics'; id: number }
  | { t: 'reload-certs'; id: number }
  | { t: 'rpc-reply'; id: number; ok: boolean; value?: unknown; error?: string };

/** Worker -> primary. */
export type ToPrimary =
  | { t: 'booted' }
  | { t: 'applied'; seq: number; version: number; listeners?: Record<string, string>; error?: string }
  /** The worker's snapshot is not the `base` a message builds on (an earlier apply failed): send a whole one. */
  | { t: 'resync' }
  | { t: 'outcomes'; batch: OutcomeBatch }
  | {
      t: 'stats-reply';
      id: number;
      stats: HostStats;
      lb: Record<string, LbState>;
      connections: number;
      inFlight: number;
    }
  | { t: 'metrics-reply'; id: number; metrics: unknown }
  | { t: 'certs-reply'; id: number; failed: string[] }
  | { t: 'rpc'; id: number; topic: string; payload: unknown }
  | { t: 'drained' };

/** The primary's handle on one worker, whether forked (node:cluster) or in-process. */
export interface WorkerLink {
  readonly id: number;
  send(msg: ToWorker): void;
  onMessage(fn: (msg: ToPrimary) => void): void;
}
