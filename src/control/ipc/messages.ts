import type { Config } from '../../config/schema/index.js';
import type { HealthOverlay } from '../../cluster/cluster-manager.js';
import type { LbState } from '../../lb/types.js';

/** An outcome batch: cluster -> address -> ordered outcome codes since the last flush (see outlier/). */
export type OutcomeBatch = Record<string, Record<string, number[]>>;

/** Per-host live numbers a worker reports for `GET /clusters/{name}/status`. */
export type HostStats = Record<string, Record<string, { active: number; requests: number; errors: number }>>;

/** Primary -> worker. */
export type ToWorker =
  | { t: 'snapshot'; version: number; config: Config }
  | { t: 'overlay'; overlay: HealthOverlay }
  | { t: 'drain'; deadlineMs: number }
  | { t: 'stats'; id: number }
  | { t: 'metrics'; id: number }
  | { t: 'reload-certs'; id: number }
  | { t: 'rpc-reply'; id: number; ok: boolean; value?: unknown; error?: string };

/** Worker -> primary. */
export type ToPrimary =
  | { t: 'booted' }
  | { t: 'applied'; version: number; listeners?: Record<string, string>; error?: string }
  | { t: 'outcomes'; batch: OutcomeBatch }
  | { t: 'stats-reply'; id: number; stats: HostStats; lb: Record<string, LbState>; connections: number; inFlight: number }
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
