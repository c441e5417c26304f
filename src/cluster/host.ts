/** Locality of an endpoint or of the gateway itself (Envoy's region/zone/subzone). */
export interface Locality {
  region: string;
  zone: string;
  subzone: string;
}

/**
 * Health flags. A host is never removed for being unhealthy: each reason is one bit and the
 * load balancer reads the combination (Envoy's Host::HealthFlag).
 */
export const HostFlag = {
  FAILED_ACTIVE_HC: 1,
  DEGRADED_ACTIVE_HC: 2,
  FAILED_OUTLIER_CHECK: 4,
  ADMIN_UNHEALTHY: 8,
  ADMIN_DEGRADED: 16,
  DRAINING: 32,
} as const;

/** An endpoint's configured `health` override as host flags; `healthy` (or none) sets no flag. */
const ADMIN_FLAGS: Readonly<Record<string, number>> = {
  healthy: 0,
  unhealthy: HostFlag.ADMIN_UNHEALTHY,
  degraded: HostFlag.ADMIN_DEGRADED,
  draining: HostFlag.DRAINING,
};

/** The flags an endpoint's `health` override sets (`draining` -> DRAINING); 0 when absent or `healthy`. */
export function adminFlags(health: string | undefined): number {
  return ADMIN_FLAGS[health ?? 'healthy'] ?? 0;
}

const UNHEALTHY_MASK =
  HostFlag.FAILED_ACTIVE_HC | HostFlag.FAILED_OUTLIER_CHECK | HostFlag.ADMIN_UNHEALTHY | HostFlag.DRAINING;
const DEGRADED_MASK = HostFlag.DEGRADED_ACTIVE_HC | HostFlag.ADMIN_DEGRADED;

export type HostHealth = 'healthy' | 'degraded' | 'unhealthy';

/** Effective health from flags: any unhealthy flag wins over degraded. */
export function hostHealth(flags: number): HostHealth {
  if (flags & UNHEALTHY_MASK) return 'unhealthy';
  if (flags & DEGRADED_MASK) return 'degraded';
  return 'healthy';
}

/**
 * One upstream endpoint as the data plane sees it. Identity fields are fixed per snapshot;
 * `flags` changes with health overlays (the LB is then rebuilt), `activeRequests` is live.
 */
export interface Host {
  /** "host:port" exactly as configured; the identity used in overlays, metrics and admin paths. */
  readonly address: string;
  readonly hostname: string;
  readonly port: number;
  readonly weight: number;
  readonly priority: number;
  readonly locality: Locality;
  readonly labels: Readonly<Record<string, string>>;
  /** Position in the cluster's host list when the host was made (an endpoint delta appends; identity is `address`). */
  readonly index: number;
  flags: number;
  /** In-flight requests on this host from this worker (least_request reads it). */
  activeRequests: number;
  /** Monotonic ms when the host became healthy for slow start; 0 when unknown. */
  healthySince: number;
}
