import type { Config, EndpointConfig } from '../config/schema/index.js';

/**
 * Where a discovery source hands the endpoint sets it finds: the config service (control/), which
 * publishes them to the workers as endpoint deltas. A discovered set is not a config version: it is
 * never stored or persisted, and a restart discovers again.
 */
export interface EndpointSink {
  /** Replace the endpoints of a cluster whose config has `discovery`; resolves once every worker runs them. */
  setEndpoints(cluster: string, endpoints: EndpointConfig[], source: string): Promise<void>;
}

/** What a source reports for one cluster in `GET /clusters/{name}/status` (and its metrics). */
export interface DiscoveryStatus {
  /** The source kind: `dns`, later `kubernetes`. */
  source: string;
  /** What is watched or resolved, e.g. `app.default.svc.cluster.local:8080 (strict)`. */
  target: string;
  /** Endpoints currently published. */
  endpoints: number;
  /** ISO time of the last successful lookup or watch event; null before the first. */
  lastSuccess: string | null;
  /** The last failure (kept until a success); null when the last attempt succeeded. */
  lastError: string | null;
  /** True while the source serves the last known endpoints because the latest attempt failed or came back empty. */
  stale: boolean;
}

/**
 * One discovery source (one module per kind, run in the primary). `reconcile` is called with every
 * committed config: it starts watching clusters that gained its `discovery` block, stops the ones
 * that lost it, and restarts a cluster whose block changed.
 */
export interface EndpointSource {
  reconcile(config: Config): void;
  status(cluster: string): DiscoveryStatus | undefined;
  /** Resolves once every watched cluster's first lookup ended and its endpoints were applied (never rejects). */
  initialized(): Promise<void>;
  stop(): void;
}
