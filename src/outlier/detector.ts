import type { ClusterConfig } from '../config/schema/index.js';
import { msOf } from '../config/duration.js';
import type { Clock, Rng } from '../common/clock.js';
import { counter } from '../observability/metrics.js';
import { Outcome } from './outcome.js';

type OutlierConfig = NonNullable<ClusterConfig['outlierDetection']>;
type Reason =
  | 'consecutive_5xx'
  | 'consecutive_gateway_failure'
  | 'consecutive_local_origin_failure'
  | 'success_rate'
  | 'failure_percentage'
  | 'success_rate_local_origin'
  | 'failure_percentage_local_origin';

/** Request counts of one interval, for the statistical detectors. */
interface Counts {
  ok: number;
  failed: number;
}

const detected = counter('meridian_outlier_detected_total', 'Outliers detected (enforced or not)', [
  'cluster',
  'reason',
]);
const enforced = counter('meridian_outlier_ejections_enforced_total', 'Ejections enforced', ['cluster', 'reason']);
const overflowed = counter('meridian_outlier_ejections_overflow_total', 'Ejections refused by maxEjectionPercent', [
  'cluster',
]);

interface HostState {
  cons5xx: number;
  consGateway: number;
  consLocal: number;
  /** External origin (the upstream's answers); in non-split mode local-origin failures count here too. */
  external: Counts;
  /** Split mode only: connections that worked vs local-origin failures. */
  local: Counts;
  ejectedUntil: number; // 0 = not ejected
  multiplier: number;
  ejections: number;
}

/**
 * Envoy's outlier detection for one cluster, run once in the primary on outcomes from every worker.
 * Consecutive detectors eject inline; success rate and failure percentage run on each interval tick,
 * which also returns hosts whose ejection time has passed and decays the back-off multiplier.
 * Ejection time = min(base x multiplier, max); the multiplier grows on each ejection while
 * multiplier x base < max + base (30 s, 60 s, 90 s, ... 300 s with the defaults).
 */
export class OutlierDetector {
  readonly #cluster: string;
  readonly #cfg: OutlierConfig;
  readonly #clock: Clock;
  readonly #rng: Rng;
  readonly #hosts = new Map<string, HostState>();
  readonly #onChange: () => void;
  readonly #base: number;
  readonly #max: number;
  readonly #jitter: number;

  constructor(cluster: string, cfg: OutlierConfig, clock: Clock, rng: Rng, onChange: () => void) {
    this.#cluster = cluster;
    this.#cfg = cfg;
    this.#clock = clock;
    this.#rng = rng;
    this.#onChange = onChange;
    const ms = msOf(cfg);
    this.#base = ms.baseEjectionTime;
    this.#max = Math.max(ms.maxEjectionTime, this.#base);
    this.#jitter = ms.maxEjectionTimeJitter;
  }

  get intervalMs(): number {
    return msOf(this.#cfg).interval;
  }

  /** Track exactly these hosts (keeps state of hosts that stay). */
  setHosts(addresses: string[]): void {
    const keep = new Set(addresses);
    for (const a of this.#hosts.keys()) if (!keep.has(a)) this.#hosts.delete(a);
    for (const a of addresses)
      if (!this.#hosts.has(a))
        this.#hosts.set(a, {
          cons5xx: 0,
          consGateway: 0,
          consLocal: 0,
          external: { ok: 0, failed: 0 },
          local: { ok: 0, failed: 0 },
          ejectedUntil: 0,
          multiplier: 0,
          ejections: 0,
        });
  }

  /** Apply one host's outcomes, in the order they happened. */
  record(address: string, outcomes: readonly Outcome[]): void {
    const h = this.#hosts.get(address);
    if (!h) return;
    const split = this.#cfg.splitExternalLocalOriginErrors;
    for (const o of outcomes) {
      if (o === Outcome.SUCCESS) {
        h.external.ok++;
        if (split) h.local.ok++;
        h.cons5xx = h.consGateway = h.consLocal = 0;
        continue;
      }
      if (!split) h.external.failed++;
      else if (o === Outcome.LOCAL_FAILURE) h.local.failed++;
      else {
        h.external.failed++;
        h.local.ok++;
      }
      this.#countFailure(h, o);
    }
  }

  #countFailure(h: HostState, o: number) {
    const c = this.#cfg;
    const local = o === Outcome.LOCAL_FAILURE;
    if (c.splitExternalLocalOriginErrors) {
      if (local) {
        if (++h.consLocal === c.consecutiveLocalOriginFailure)
          this.#consecutive(
            h,
            'consLocal',
            'consecutive_local_origin_failure',
            c.enforcingConsecutiveLocalOriginFailure,
          );
        return;
      }
      // The upstream answered, so the connection worked (Envoy's LocalOriginConnectSuccess).
      h.consLocal = 0;
    }
    // Non-split mode counts local-origin failures as 5xx and as gateway failures.
    if (o === Outcome.GATEWAY_ERROR || local) {
      if (++h.consGateway === c.consecutiveGatewayFailure)
        this.#consecutive(h, 'consGateway', 'consecutive_gateway_failure', c.enforcingConsecutiveGatewayFailure);
    } else h.consGateway = 0;
    if (++h.cons5xx === c.consecutive5xx) this.#consecutive(h, 'cons5xx', 'consecutive_5xx', c.enforcingConsecutive5xx);
  }

  /**
   * A consecutive-error threshold was reached: as Envoy (onConsecutiveErrorWorker), the counter
   * starts over whether or not the ejection is enforced, so the next detection needs a full run again.
   */
  #consecutive(h: HostState, counter: 'cons5xx' | 'consGateway' | 'consLocal', reason: Reason, enforcing: number) {
    h[counter] = 0;
    this.#detect(h, reason, enforcing);
  }

  #detect(h: HostState, reason: Reason, enforcing: number) {
    if (h.ejectedUntil) return;
    detected.labels(this.#cluster, reason).inc();
    if (this.#rng.random() * 100 >= enforcing) return;
    if (!this.#mayEject()) {
      overflowed.labels(this.#cluster).inc();
      return;
    }
    if (h.multiplier * this.#base < this.#max + this.#base) h.multiplier++;
    // Envoy's max_ejection_time_jitter: gateways that eject a host together do not return it together.
    const jitter = this.#jitter > 0 ? Math.floor(this.#rng.random() * (this.#jitter + 1)) : 0;
    h.ejectedUntil = this.#clock.now() + Math.min(this.#base * h.multiplier, this.#max) + jitter;
    h.ejections++;
    h.cons5xx = h.consGateway = h.consLocal = 0;
    enforced.labels(this.#cluster, reason).inc();
    this.#onChange();
  }

  /** End an ejection early (a passing active health check); true if the host was ejected. */
  uneject(address: string): boolean {
    const h = this.#hosts.get(address);
    if (!h?.ejectedUntil) return false;
    h.ejectedUntil = 0;
    h.cons5xx = h.consGateway = h.consLocal = 0;
    return true;
  }

  /** Current Envoy rule: eject only while 100 * (ejected + 1) / hosts <= maxEjectionPercent. */
  #mayEject(): boolean {
    const ejected = this.ejected().size;
    if (this.#cfg.alwaysEjectOneHost && ejected === 0) return true;
    return (100 * (ejected + 1)) / this.#hosts.size <= this.#cfg.maxEjectionPercent;
  }

  /** The interval timer: return expired ejections, decay multipliers, run statistical detectors. */
  tick(): void {
    const now = this.#clock.now();
    let changed = false;
    for (const h of this.#hosts.values()) {
      if (h.ejectedUntil && h.ejectedUntil <= now) {
        h.ejectedUntil = 0;
        h.cons5xx = h.consGateway = h.consLocal = 0;
        changed = true;
      } else if (!h.ejectedUntil && h.multiplier > 0) h.multiplier--;
    }
    if (changed) this.#onChange();
    const c = this.#cfg;
    this.#successRate((h) => h.external, 'success_rate', c.successRate.enforcing);
    this.#failurePercentage((h) => h.external, 'failure_percentage', c.failurePercentage.enforcing);
    if (c.splitExternalLocalOriginErrors) {
      this.#successRate((h) => h.local, 'success_rate_local_origin', c.successRate.enforcingLocalOrigin);
      this.#failurePercentage(
        (h) => h.local,
        'failure_percentage_local_origin',
        c.failurePercentage.enforcingLocalOrigin,
      );
    }
    for (const h of this.#hosts.values()) h.external.ok = h.external.failed = h.local.ok = h.local.failed = 0;
  }

  /** Eject hosts whose success rate is below mean - stdevFactor/1000 x stdev (population stdev). */
  #successRate(counts: (h: HostState) => Counts, reason: Reason, enforcing: number) {
    const c = this.#cfg.successRate;
    const eligible = this.#volumeHosts(counts, c.requestVolume);
    if (eligible.length < c.minimumHosts) return;
    const rates = eligible.map((h) => (100 * counts(h).ok) / (counts(h).ok + counts(h).failed));
    const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
    const stdev = Math.sqrt(rates.reduce((a, r) => a + (r - mean) ** 2, 0) / rates.length);
    const threshold = mean - (c.stdevFactor / 1000) * stdev;
    eligible.forEach((h, i) => {
      if (rates[i] < threshold) this.#detect(h, reason, enforcing);
    });
  }

  #failurePercentage(counts: (h: HostState) => Counts, reason: Reason, enforcing: number) {
    const c = this.#cfg.failurePercentage;
    const eligible = this.#volumeHosts(counts, c.requestVolume);
    if (eligible.length < c.minimumHosts) return;
    for (const h of eligible)
      if ((100 * counts(h).failed) / (counts(h).ok + counts(h).failed) >= c.threshold)
        this.#detect(h, reason, enforcing);
  }

  #volumeHosts(counts: (h: HostState) => Counts, volume: number): HostState[] {
    return [...this.#hosts.values()].filter((h) => !h.ejectedUntil && counts(h).ok + counts(h).failed >= volume);
  }

  ejected(): Set<string> {
    const out = new Set<string>();
    for (const [a, h] of this.#hosts) if (h.ejectedUntil) out.add(a);
    return out;
  }

  /** Ejection facts of one host for GET /clusters/{name}/status. */
  status(address: string): { ejected: boolean; ejections: number; ejectedForMs: number } | undefined {
    const h = this.#hosts.get(address);
    if (!h) return undefined;
    return {
      ejected: h.ejectedUntil > 0,
      ejections: h.ejections,
      ejectedForMs: h.ejectedUntil ? Math.max(0, Math.round(h.ejectedUntil - this.#clock.now())) : 0,
    };
  }
}
