import type { Config } from '../../config/schema/index.js';
import { validateConfig } from '../../config/validate.js';
import type { Primary } from '../../process/primary.js';
import { logger } from '../../observability/logger.js';
import { AdminError } from './http-util.js';
import { configHash } from '../store/config-store.js';

const audit = logger.child({ type: 'audit' });

/** Result of a successful change. */
export interface ChangeResult {
  version: number;
  changed: boolean;
}

/**
 * Every config change goes through here: serialized, version-checked (If-Match), validated with
 * field paths, committed to the store (persisted), then published to every worker before returning.
 */
export class ConfigService {
  readonly #primary: Primary;
  #queue: Promise<unknown> = Promise.resolve();
  /** Runs after validation, before the change is stored; may refuse it with an AdminError (shared store). */
  beforeCommit?: (config: Config, source: string) => Promise<void>;

  constructor(primary: Primary) {
    this.#primary = primary;
  }

  get current() {
    return this.#primary.current;
  }

  /** Apply `edit` to a copy of the current config. `edit` may replace the whole document by returning one. */
  change(who: string, action: string, ifMatch: string | undefined, edit: (draft: Config) => Config | void, source = `admin:${who}`): Promise<ChangeResult> {
    const run = async (): Promise<ChangeResult> => {
      if (this.#primary.draining) throw new AdminError(503, 'draining', { error: 'draining', message: 'the gateway is draining; config changes are refused' });
      const cur = this.#primary.current;
      if (ifMatch !== undefined && !etagMatches(ifMatch, cur.version)) {
        throw new AdminError(412, 'version mismatch', { error: 'precondition_failed', message: `If-Match ${ifMatch} does not match current version "${cur.version}"`, version: cur.version });
      }
      const draft = structuredClone(cur.config) as Config;
      const next = edit(draft) ?? draft;
      const result = validateConfig(next);
      if (!result.ok) throw new AdminError(400, 'invalid config', { errors: result.errors });
      if (this.beforeCommit && configHash(result.config) !== cur.hash) await this.beforeCommit(result.config, source);
      const { version, changed } = await this.#primary.store.commit(result.config, source);
      if (changed) {
        const errors = await this.#primary.publish(version);
        if (errors.length) throw new AdminError(500, 'apply failed', { error: 'apply_failed', errors, version: version.version });
      }
      audit.info({ who, action, oldVersion: cur.version, newVersion: version.version, changed }, 'config change');
      return { version: version.version, changed };
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }
}

/** If-Match: `*`, `"7"`, `7`, or a list. */
export function etagMatches(header: string, version: number): boolean {
  return header.split(',').some((t) => {
    const v = t.trim().replace(/^W\//, '').replace(/"/g, '');
    return v === '*' || v === String(version);
  });
}
