import type { Config } from '../config/schema/index.js';
import type { ToPrimary, WorkerLink } from '../control/ipc/messages.js';
import type { ConfigStore, ConfigVersion } from '../control/store/config-store.js';
import type { HealthOverlay } from '../cluster/cluster-manager.js';
import { logger } from '../observability/logger.js';
import { configVersion } from '../observability/request-metrics.js';
import type { WorkerSupervisor } from './workers.js';

const APPLY_TIMEOUT_MS = 15_000;

interface PendingApply {
  version: number;
  errors: string[];
  check: () => void;
}

/**
 * Snapshot publishing: pushes a committed config version to every worker and waits for each one's
 * acknowledgement, so that "publish resolved" means "every worker serves it" (a worker booting
 * later gets the newest version at once); keeps the health/ejection overlay every worker applies
 * on top of its snapshot; records the listener addresses workers bound.
 */
export class SnapshotPublisher {
  readonly listenerAddresses: Record<string, string> = {};
  #overlay: HealthOverlay = {};
  readonly #store: ConfigStore<Config>;
  readonly #workers: WorkerSupervisor;
  readonly #pending = new Map<number, PendingApply>();
  /** Worker id -> newest version it acknowledged. */
  readonly #applied = new Map<number, number>();

  constructor(store: ConfigStore<Config>, workers: WorkerSupervisor) {
    this.#store = store;
    this.#workers = workers;
    workers.onMessage((msg, link) => this.#onMessage(msg, link));
    workers.onWorkerGone((id) => {
      this.#applied.delete(id);
      this.#checkPending();
    });
  }

  get overlay(): HealthOverlay {
    return this.#overlay;
  }

  /** Push a committed version to every worker; resolves with the workers' apply errors once all applied it. */
  async publish(v: ConfigVersion<Config>): Promise<string[]> {
    const done = this.waitForAll(v.version);
    this.#workers.broadcast({ t: 'snapshot', version: v.version, config: v.config });
    const errors = await done;
    configVersion.set(v.version);
    if (errors.length) logger.error({ version: v.version, errors }, 'some workers failed to apply the config');
    return errors;
  }

  setOverlay(overlay: HealthOverlay): void {
    this.#overlay = overlay;
    this.#workers.broadcast({ t: 'overlay', overlay });
  }

  /**
   * Wait until at least the configured number of workers are live and each has acknowledged
   * `version` or a later one (a respawned worker boots on the newest). Returns worker errors.
   */
  waitForAll(version: number): Promise<string[]> {
    return new Promise((resolve) => {
      const p: PendingApply = { version, errors: [], check: () => {} };
      const finish = (extra?: string) => {
        clearTimeout(timer);
        this.#pending.delete(version);
        resolve(extra ? [...p.errors, extra] : p.errors);
      };
      const timer = setTimeout(() => finish('timed out waiting for workers to apply'), APPLY_TIMEOUT_MS);
      p.check = () => {
        const live = [...this.#workers.links.keys()];
        if (live.length >= this.#workers.count && live.every((id) => (this.#applied.get(id) ?? 0) >= version)) finish();
      };
      this.#pending.set(version, p);
      p.check();
    });
  }

  #onMessage(msg: ToPrimary, link: WorkerLink) {
    if (msg.t === 'booted') {
      const current = this.#store.current!;
      link.send({ t: 'snapshot', version: current.version, config: current.config });
      link.send({ t: 'overlay', overlay: this.#overlay });
    } else if (msg.t === 'applied') {
      if (msg.listeners) Object.assign(this.listenerAddresses, msg.listeners);
      if (msg.error) this.#pending.get(msg.version)?.errors.push(msg.error);
      this.#applied.set(link.id, Math.max(this.#applied.get(link.id) ?? 0, msg.version));
      this.#checkPending();
    }
  }

  #checkPending() {
    for (const p of [...this.#pending.values()]) p.check();
  }
}
