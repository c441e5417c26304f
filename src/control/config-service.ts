import type { Config, EndpointConfig } from '../config/schema/index.js';
import { ApiError } from './api-error.js';
import type { ConfigError } from '../config/validate.js';
import { logger } from '../observability/logger.js';

import { configHash, type ConfigStore, type ConfigVersion } from './store/config-store.js';

const audit = logger.child({ type: 'audit' });

/** Result of a successful change. */
export interface ChangeResult {
  version: number;
  changed: boolean;
}

/** What a config service changes: a gateway (its workers run each version) or the hub (its fleet). */
export interface ConfigTarget<T> {
  readonly store: ConfigStore<T>;
  validate(input: unknown): { ok: true; config: T } | { ok: false; errors: ConfigError[] };
  /** Make a committed version live; resolves with the apply errors (none: every consumer runs it). */
  publish(version: ConfigVersion<T>): Promise<unknown[]>;
  /** Why no change may be made now (e.g. a drain), if so. */
  refusal?(): ApiError | undefined;
  /**
   * Runs after validation, before a change that alters the config is stored; may refuse it with an
   * ApiError (the shared store writes the change through to Redis here, compare-and-set). May name
   * the version number the change is stored as (hub replicas on etcd number versions together).
   */
  beforeCommit?(config: T, source: string): Promise<void | { version: number }>;
  /** Make a discovery source's endpoints for a cluster live (not a version); resolves with apply errors. */
  publishEndpoints?(cluster: string, endpoints: EndpointConfig[]): Promise<unknown[]>;
}

/**
 * The one interface every source of config changes holds: the admin API, SIGHUP, the hub client,
 * the shared store (and the hub's own API). A source reads the current version and hands in edits;
 * it never reaches the store, the publisher or another source.
 */
export interface ConfigChanges<T = Config> {
  readonly current: ConfigVersion<T>;
  /**
   * Apply `edit` to a copy of the current config (it may return a whole new document), validate,
   * store and publish it; `source` names the origin in the version history (default `admin:<who>`).
   */
  change(
    who: string,
    action: string,
    ifMatch: string | undefined,
    edit: (draft: T) => T | void,
    source?: string,
  ): Promise<ChangeResult>;
  /**
   * A discovery source's endpoint set for one cluster with `discovery` (see discovery/): not stored as a
   * version; it reaches the workers as an endpoint delta, in order with every other change.
   */
  setEndpoints(cluster: string, endpoints: EndpointConfig[], source: string): Promise<void>;
}

/**
 * Every config change goes through here: serialized, version-checked (If-Match), validated with
 * field paths, committed to the store (persisted), then published (to every worker, or to the fleet)
 * before returning. Built once, in the process's wiring (process/gateway.ts, hub/control-plane.ts),
 * and handed to each source as {@link ConfigChanges}: source -> service -> store -> publisher.
 */
export class ConfigService<T = Config> implements ConfigChanges<T> {
  readonly #target: ConfigTarget<T>;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(target: ConfigTarget<T>) {
    this.#target = target;
  }

  get current(): ConfigVersion<T> {
    return this.#target.store.current!;
  }

  /** Apply `edit` to a copy of the current config. `edit` may replace the whole document by returning one. */
  change(
    who: string,
    action: string,
    ifMatch: string | undefined,
    edit: (draft: T) => T | void,
    source = `admin:${who}`,
  ): Promise<ChangeResult> {
    const run = async (): Promise<ChangeResult> => {
      const refusal = this.#target.refusal?.();
      if (refusal) throw refusal;
      const cur = this.current;
      if (ifMatch !== undefined && !etagMatches(ifMatch, cur.version)) {
        throw new ApiError(412, 'version mismatch', {
          error: 'precondition_failed',
          message: `If-Match ${ifMatch} does not match current version "${cur.version}"`,
          version: cur.version,
        });
      }
      // A JSON round trip, not structuredClone: a stored config is plain JSON data, and this is ~3x faster
      // (100,000 endpoints: ~90 ms against ~250 ms).
      const draft = JSON.parse(JSON.stringify(cur.config)) as T;
      const next = edit(draft) ?? draft;
      const result = this.#target.validate(next);
      if (!result.ok) throw new ApiError(400, 'invalid config', { errors: result.errors });
      const numbered =
        this.#target.beforeCommit && configHash(result.config) !== cur.hash
          ? await this.#target.beforeCommit(result.config, source)
          : undefined;
      const { version, changed } = await this.#target.store.commit(result.config, source, numbered?.version);
      if (changed) {
        const errors = await this.#target.publish(version);
        if (errors.length) throw await this.#restore(cur, version, errors, who);
      }
      audit.info({ who, action, oldVersion: cur.version, newVersion: version.version, changed }, 'config change');
      return { version: version.version, changed };
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }

  setEndpoints(cluster: string, endpoints: EndpointConfig[], source: string): Promise<void> {
    const run = async () => {
      // A draining gateway publishes nothing more; a target without discovery has nothing to publish to.
      if (this.#target.refusal?.() || !this.#target.publishEndpoints) return;
      const errors = await this.#target.publishEndpoints(cluster, endpoints);
      if (errors.length) logger.error({ cluster, source, errors }, 'discovered endpoints failed to apply');
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }

  /**
   * A version some consumer could not run (a listener port in use) is replaced by the config before
   * it, committed as a new version and published again: what is stored and persisted stays a config
   * every worker runs, and a restart does not bring the failed one back.
   */
  async #restore(
    previous: ConfigVersion<T>,
    failed: ConfigVersion<T>,
    errors: unknown[],
    who: string,
  ): Promise<ApiError> {
    const source = `rollback:${previous.version}`;
    let restoreErrors: unknown[];
    let restored: number | undefined;
    try {
      const numbered = this.#target.beforeCommit ? await this.#target.beforeCommit(previous.config, source) : undefined;
      const { version } = await this.#target.store.commit(previous.config, source, numbered?.version);
      restored = version.version;
      restoreErrors = await this.#target.publish(version);
    } catch (e) {
      restoreErrors = [(e as Error).message];
    }
    audit.warn(
      { who, failedVersion: failed.version, restoredVersion: restored, errors, restoreErrors },
      'config change failed to apply; previous config restored',
    );
    return new ApiError(500, 'apply failed', {
      error: 'apply_failed',
      errors,
      version: failed.version,
      restoredVersion: restored,
      ...(restoreErrors.length ? { restoreErrors } : {}),
    });
  }
}

/** If-Match: `*`, `"7"`, `7`, or a list. */
function etagMatches(header: string, version: number): boolean {
  return header.split(',').some((t) => {
    const v = t.trim().replace(/^W\//, '').replace(/"/g, '');
    return v === '*' || v === String(version);
  });
}
