import type { Config, ClusterConfig } from '../config/schema/index.js';
import type { Clock, Rng } from '../common/clock.js';
import { HostFlag } from '../cluster/host.js';
import type { HealthOverlay } from '../cluster/cluster-manager.js';
import type { OutcomeBatch } from '../control/ipc/messages.js';
import { HealthChecker } from '../health/health-checker.js';
import { OutlierDetector } from '../outlier/detector.js';
import { PoolRegistry } from '../pool/pool-registry.js';

interface Checked {
  key: string;
  checker: HealthChecker;
}

interface Detected {
  key: string;
  detector: OutlierDetector;
  timer: NodeJS.Timeout;
}

/**
 * The primary's health authority: active health checks and outlier ejection decisions, made once
 * for all workers and broadcast as one overlay of host flags, so every worker sees the same set.
 */
export class HealthControl {
  readonly #checked = new Map<string, Checked>();
  readonly #detected = new Map<string, Detected>();
  readonly #pools = new PoolRegistry();
  readonly #publish: (overlay: HealthOverlay) => void;
  readonly #clock: Clock;
  readonly #rng: Rng;
  #lastOverlay = '{}';

  constructor(publish: (overlay: HealthOverlay) => void, clock: Clock, rng: Rng) {
    this.#publish = publish;
    this.#clock = clock;
    this.#rng = rng;
  }

  /** Align checkers and detectors with a config; waits for the first check round of new checkers. */
  async reconcile(config: Config): Promise<void> {
    const clusters = config.clusters.filter((c) => c.kind !== 'aggregate');
    const names = new Set(clusters.map((c) => c.name));
    for (const [name, c] of this.#checked)
      if (!names.has(name)) {
        c.checker.stop();
        this.#checked.delete(name);
      }
    for (const [name, d] of this.#detected)
      if (!names.has(name)) {
        clearInterval(d.timer);
        this.#detected.delete(name);
      }
    await Promise.all(clusters.map((c) => this.#reconcileChecks(c)));
    for (const c of clusters) this.#reconcileOutlier(c);
    this.#republish();
  }

  async #reconcileChecks(c: ClusterConfig) {
    // The check settings; a change of endpoints alone keeps the checker and the state of those that stay.
    const key = JSON.stringify([c.healthCheck, c.protocol, c.upstreamTls]);
    const existing = this.#checked.get(c.name);
    if (existing?.key === key) return existing.checker.update(c.endpoints.map((e) => e.address));
    existing?.checker.stop();
    this.#checked.delete(c.name);
    if (!c.healthCheck) return;
    const checker = new HealthChecker(
      c.healthCheck,
      (a) => this.#pools.acquire(c, a),
      this.#rng,
      (address, state, changed) => {
        // Envoy's successful_active_health_check_uneject_host: a passing check ends an ejection.
        const unejected =
          !state.failed &&
          c.outlierDetection?.successfulActiveHealthCheckUnejectHost &&
          this.#detected.get(c.name)?.detector.uneject(address);
        if (changed || unejected) this.#republish();
      },
    );
    this.#checked.set(c.name, { key, checker });
    await checker.start(c.endpoints.map((e) => e.address));
  }

  #reconcileOutlier(c: ClusterConfig) {
    const key = JSON.stringify(c.outlierDetection ?? null);
    let d = this.#detected.get(c.name);
    if (d && d.key !== key) {
      clearInterval(d.timer);
      this.#detected.delete(c.name);
      d = undefined;
    }
    if (!c.outlierDetection) return;
    if (!d) {
      const detector = new OutlierDetector(c.name, c.outlierDetection, this.#clock, this.#rng, () => this.#republish());
      const timer = setInterval(() => detector.tick(), detector.intervalMs);
      timer.unref();
      this.#detected.set(c.name, (d = { key, detector, timer }));
    }
    d.detector.setHosts(c.endpoints.map((e) => e.address));
  }

  /** Outcome batches from workers feed the detectors and tell checkers their cluster carries traffic. */
  onOutcomes(batch: OutcomeBatch): void {
    for (const [cluster, hosts] of Object.entries(batch)) {
      this.#checked.get(cluster)?.checker.noteTraffic();
      const d = this.#detected.get(cluster)?.detector;
      if (!d) continue;
      for (const [address, outcomes] of Object.entries(hosts)) d.record(address, outcomes);
    }
  }

  overlay(): HealthOverlay {
    const out: HealthOverlay = {};
    for (const [cluster, { checker }] of this.#checked) {
      const flags = (out[cluster] ??= {});
      for (const [a, s] of checker.states)
        flags[a] = (s.failed ? HostFlag.FAILED_ACTIVE_HC : 0) | (s.degraded ? HostFlag.DEGRADED_ACTIVE_HC : 0);
    }
    for (const [cluster, { detector }] of this.#detected) {
      const flags = (out[cluster] ??= {});
      for (const a of detector.ejected()) flags[a] = (flags[a] ?? 0) | HostFlag.FAILED_OUTLIER_CHECK;
    }
    return out;
  }

  #republish() {
    const overlay = this.overlay();
    const text = JSON.stringify(overlay);
    if (text === this.#lastOverlay) return;
    this.#lastOverlay = text;
    this.#publish(overlay);
  }

  /** Per-host facts for GET /clusters/{name}/status. */
  details(cluster: string, address: string): Record<string, unknown> {
    const s = this.#checked.get(cluster)?.checker.states.get(address);
    const o = this.#detected.get(cluster)?.detector.status(address);
    return {
      activeHealthCheck: s ? (s.failed ? 'failing' : s.degraded ? 'degraded' : 'passing') : 'none',
      ...(o ? { outlier: o } : {}),
    };
  }

  stop(): void {
    for (const c of this.#checked.values()) c.checker.stop();
    for (const d of this.#detected.values()) clearInterval(d.timer);
    void this.#pools.closeAll();
  }
}
