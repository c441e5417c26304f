import type { Config } from '../config/schema/index.js';
import { loadConfigFile } from '../config/load.js';
import type { ConfigError } from '../config/validate.js';
import { logger } from '../observability/logger.js';
import { ApiError } from './api-error.js';
import type { ConfigChanges } from './config-service.js';

export interface ReloadResult {
  ok: boolean;
  version?: number;
  errors?: ConfigError[];
}

/**
 * The config file as a source of changes (SIGHUP): re-read it and hand it to the config path, so a
 * reload queues behind (never races) admin and hub changes. An invalid file is refused with its
 * field paths and the live config stays. `keep` carries over what the file does not own (the
 * management server's resources on a managed gateway).
 */
export async function reloadConfigFile(
  changes: ConfigChanges,
  file: string,
  keep: (fromFile: Config) => Config = (c) => c,
): Promise<ReloadResult> {
  const loaded = await loadConfigFile(file);
  try {
    if (!loaded.ok) throw new ApiError(400, 'invalid config', { errors: loaded.errors });
    const next = keep(loaded.config);
    const r = await changes.change('sighup', 'reload config file', undefined, () => next, 'file');
    logger.info({ version: r.version, changed: r.changed }, 'config reloaded');
    return { ok: true, version: r.version };
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    const errors = (e.body as { errors?: ConfigError[] }).errors ?? [{ path: '(reload)', message: e.message }];
    logger.error({ errors }, 'config reload rejected; previous config stays live');
    return { ok: false, errors };
  }
}
