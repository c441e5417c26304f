import { logger } from '../observability/logger.js';
import { loadConfigFile } from '../config/load.js';
import { checkConfig, type ConfigError } from '../config/validate.js';
import { AdminError } from '../control/admin/http-util.js';
import { Primary } from './primary.js';
import { parseDuration } from '../config/duration.js';
import { AdminServer } from '../control/admin/server.js';
import { HealthControl } from './health-control.js';
import { registerLocalRateLimitServer } from '../filters/ratelimit/local-store.js';
import { RedisHealth } from '../filters/ratelimit/redis-health.js';
import { systemClock, systemRng } from '../common/clock.js';
import { ManagedGateway } from '../control/managed/managed-gateway.js';
import { SharedConfigStore } from '../control/store/shared-store.js';

export interface GatewayOptions {
  configFile: string;
  stateDir: string;
  workers?: number;
  workerExec?: string;
}

/** A started gateway (primary side): the handles tests and the CLI need. */
export interface RunningGateway {
  primary: Primary;
  admin: AdminServer;
  /** Bound addresses: admin API, ops listener, data listeners by name. */
  addresses: { admin: string; ops?: string; listeners: Record<string, string> };
  /** Re-read the config file and apply it (SIGHUP); invalid files are rejected, old config stays. */
  reload(): Promise<{ ok: boolean; version?: number; errors?: ConfigError[] }>;
  /** Graceful stop: drain workers up to gateway.drainTimeout. */
  stop(): Promise<void>;
}

export class StartupError extends Error {
  constructor(readonly errors: ConfigError[]) {
    super(errors.map((e) => `${e.path}: ${e.message}`).join('\n'));
  }
}

/**
 * Start the primary: restore persisted state (or seed it from the config file on first start),
 * start the workers and wait until every worker serves the current version.
 */
export async function startGateway(opts: GatewayOptions): Promise<RunningGateway> {
  const primary = new Primary({ stateDir: opts.stateDir, workers: opts.workers, workerExec: opts.workerExec });
  if (!(await primary.store.load())) {
    const loaded = await loadConfigFile(opts.configFile);
    if (!loaded.ok) throw new StartupError(loaded.errors);
    await primary.store.commit(loaded.config, 'file');
  } else {
    const errors = await primary.store.revalidate(checkConfig);
    if (errors.length) throw new StartupError(errors);
  }
  const current = primary.current;
  let managed: ManagedGateway | undefined;
  const health = new HealthControl((overlay) => {
    primary.setOverlay(overlay);
    void managed?.client.reportNow();
  }, systemClock, systemRng);
  primary.onWorkerMessage((msg) => { if (msg.t === 'outcomes') health.onOutcomes(msg.batch); });
  primary.beforePublish = (config) => health.reconcile(config);
  await health.reconcile(current.config);
  registerLocalRateLimitServer(primary.rpc, systemClock);
  await primary.startWorkers(current.config);
  const admin = new AdminServer(primary);
  const redisHealth = new RedisHealth();
  admin.readiness.push(() => redisHealth.status(primary.current.config));
  admin.hostDetails.push((cluster, address) => health.details(cluster, address));
  const bound = await admin.listen(current.config.admin);
  const addresses = { ...bound, listeners: primary.listenerAddresses };
  managed = await followManagementServer(primary, admin, opts.stateDir);
  const shared = shareConfigThroughRedis(primary, admin);
  // Through the config service, so a reload queues behind (never races) admin and hub changes.
  const reload = async () => {
    const loaded = await loadConfigFile(opts.configFile);
    try {
      if (!loaded.ok) throw new AdminError(400, 'invalid config', { errors: loaded.errors });
      const next = managed ? managed.withManaged(loaded.config) : loaded.config;
      const r = await admin.service.change('sighup', 'reload config file', undefined, () => next, 'file');
      logger.info({ version: r.version, changed: r.changed }, 'config reloaded');
      return { ok: true, version: r.version };
    } catch (e) {
      if (!(e instanceof AdminError)) throw e;
      const errors = (e.body as { errors?: ConfigError[] }).errors ?? [{ path: '(reload)', message: e.message }];
      logger.error({ errors }, 'config reload rejected; previous config stays live');
      return { ok: false, errors };
    }
  };
  const stop = async () => {
    admin.draining = true;
    managed?.client.stop();
    shared?.stop();
    await primary.drain(parseDuration(primary.current.config.gateway.drainTimeout));
    await admin.close();
    health.stop();
    redisHealth.stop();
  };
  return { primary, admin, addresses, reload, stop };
}

/** With `managementServer` set: load the last applied snapshot, guard managed resources, start watching. */
async function followManagementServer(primary: Primary, admin: AdminServer, stateDir: string): Promise<ManagedGateway | undefined> {
  const ms = primary.current.config.managementServer;
  if (!ms) return undefined;
  const managed = new ManagedGateway(primary, admin.service, stateDir, ms, systemRng);
  await managed.load();
  admin.writeGuards.push((kind, name) => managed.guard(kind, name));
  admin.readiness.push(() => ({ managementServer: { url: ms.url, connected: managed.client.connected, applied: managed.applied ?? null } }));
  managed.client.start();
  return managed;
}

/** With `configStore` set: replicas keep one config through Redis (no hub). */
function shareConfigThroughRedis(primary: Primary, admin: AdminServer): SharedConfigStore | undefined {
  const { configStore, gateway } = primary.current.config;
  if (!configStore) return undefined;
  const shared = new SharedConfigStore(configStore, gateway.name, admin.service);
  admin.readiness.push(() => ({ sharedConfigStore: { connected: shared.connected } }));
  shared.start();
  return shared;
}
