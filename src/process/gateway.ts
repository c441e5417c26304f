import { ApiError } from '../control/api-error.js';
import { ConfigService, type ConfigChanges } from '../control/config-service.js';
import { reloadConfigFile } from '../control/file-reload.js';
import { loadConfigFile } from '../config/load.js';
import { checkConfig, validateConfig, type ConfigError } from '../config/validate.js';

import { Primary } from './primary.js';
import { msOf } from '../config/duration.js';
import { AdminServer } from '../control/admin/server.js';
import { HealthControl } from './health-control.js';
import { registerLocalRateLimitServer } from '../filters/ratelimit/local-store.js';
import { RedisHealth } from '../filters/ratelimit/redis-health.js';
import { systemClock, systemRng } from '../common/clock.js';
import { ManagedGateway } from '../control/managed/managed-gateway.js';
import { SharedConfigStore } from '../control/store/shared-store.js';
import { DnsDiscovery } from '../discovery/dns.js';
import { KubernetesDiscovery } from '../discovery/kubernetes.js';
import type { EndpointSource } from '../discovery/endpoint-source.js';
import { GatewayApiSource } from '../control/sources/gateway-api/source.js';
import { bootstrapSvid, svidFiles, type GatewaySvid } from '../control/managed/gateway-svid.js';
import { HubConnection } from '../control/managed/hub-connection.js';
import { SvidRenewer } from '../control/managed/svid-renewer.js';
import { hubConnectionOptions } from '../control/managed/managed-gateway.js';
import { withSvidListeners } from '../control/managed/svid-tls.js';
import { clusterOf } from '../common/spiffe-id.js';
import type { Config } from '../config/schema/index.js';

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
 * start the workers and wait until every worker serves the current version. This is the one place
 * the control path is wired: every source (admin API, SIGHUP, hub client, shared store) gets the
 * one ConfigService built here, which stores each change and publishes it to the workers.
 */
export async function startGateway(opts: GatewayOptions): Promise<RunningGateway> {
  const files = svidFiles(opts.stateDir);
  const primary = new Primary({
    stateDir: opts.stateDir,
    workers: opts.workers,
    workerExec: opts.workerExec,
    // Listeners with tls.svid serve the SVID's files (a no-op for configs without one).
    deriveLive: (config) => withSvidListeners(config, files),
  });
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
  const health = new HealthControl(
    (overlay) => {
      primary.setOverlay(overlay);
      void managed?.client.reportNow();
    },
    systemClock,
    systemRng,
  );
  primary.onWorkerMessage((msg) => {
    if (msg.t === 'outcomes') health.onOutcomes(msg.batch);
  });
  // Before the workers: their tls.svid listeners and east-west clusters read the SVID's files.
  const svid = await startupSvid(current.config, opts.stateDir);
  await health.reconcile(primary.live);
  registerLocalRateLimitServer(primary.rpc, systemClock);
  await primary.startWorkers(current.config);
  const shared = current.config.configStore
    ? new SharedConfigStore(current.config.configStore, current.config.gateway.name)
    : undefined;
  const changes = new ConfigService({
    store: primary.store,
    validate: validateConfig,
    // Health checks of new endpoints get their first round before workers route to them; discovery
    // sources follow each version (a new `discovery` block starts a lookup loop or a watch).
    publish: async (v) => {
      const errors = await primary.publish(v, (live) => health.reconcile(live));
      for (const s of discovery) s.reconcile(primary.current.config);
      gatewayApi.reconcile(primary.current.config);
      return errors;
    },
    publishEndpoints: (cluster, endpoints) =>
      primary.publishEndpoints(cluster, endpoints, (live) => health.reconcile(live)),
    refusal: () =>
      primary.draining
        ? new ApiError(503, 'draining', {
            error: 'draining',
            message: 'the gateway is draining; config changes are refused',
          })
        : undefined,
    // Replicas sharing one config write every change through to Redis before storing it.
    beforeCommit: shared ? (config, source) => shared.writeThrough(config, source) : undefined,
  });
  // The Gateway API (gateway.gatewayApi) is a config source like the admin API: its routes are versions.
  const gatewayApi = new GatewayApiSource(changes, opts.stateDir);
  // Endpoint sources run in the primary and hand their sets to the config service (never a version).
  const discovery: EndpointSource[] = [new DnsDiscovery(changes), new KubernetesDiscovery(changes)];
  for (const s of discovery) s.reconcile(current.config);
  await warmUp(discovery);
  gatewayApi.reconcile(current.config);
  await warmUp([gatewayApi]);
  // Clusters the Gateway API made watch their EndpointSlices: let those first lists land too.
  await warmUp(discovery);
  managed = await loadManagedState(primary, changes, opts.stateDir, svid);
  const redisHealth = new RedisHealth();
  const readiness: Array<() => Record<string, unknown>> = [() => redisHealth.status(primary.current.config)];
  if (managed) readiness.push(managedReadiness(managed, current.config.managementServer!.url));
  const renewer =
    svid && managed
      ? svidRenewer(svid, { primary, managed, config: current.config, stateDir: opts.stateDir })
      : undefined;
  if (renewer) readiness.push(() => renewer.status());
  if (renewer && managed) managed.onTrust = (trust) => renewer.applyTrust(trust);
  if (shared) readiness.push(() => ({ sharedConfigStore: { connected: shared.connected } }));
  const admin = new AdminServer(primary, {
    changes,
    readiness,
    hostDetails: [(cluster, address) => health.details(cluster, address)],
    clusterDetails: [
      (cluster) => {
        const status = discovery.map((s) => s.status(cluster)).find(Boolean);
        return status ? { discovery: status } : {};
      },
    ],
    // Sources that own resources refuse admin writes to them: the Gateway API's gwapi.*, the hub's managed ones.
    writeGuard: (kind, name) => gatewayApi.guard(kind, name) ?? managed?.guard(kind, name),
  });
  const bound = await admin.listen(current.config.admin);
  const addresses = { ...bound, listeners: primary.listenerAddresses };
  managed?.client.start();
  shared?.start(changes);
  const reload = () => reloadConfigFile(changes, opts.configFile, managed ? (c) => managed!.withManaged(c) : undefined);
  renewer?.start();
  const stop = async () => {
    renewer?.stop();
    admin.draining = true;
    managed?.client.stop();
    shared?.stop();
    await primary.drain(msOf(primary.current.config.gateway).drainTimeout);
    await admin.close();
    health.stop();
    for (const s of discovery) s.stop();
    gatewayApi.stop();
    redisHealth.stop();
  };
  return { primary, admin, addresses, reload, stop };
}

/** How long start waits for discovered clusters' first endpoints before it reports ready anyway. */
const DISCOVERY_WARM_UP_MS = 5000;

/**
 * Envoy warms a DNS cluster (its first resolution) before listeners use it; start waits for every
 * source's first lookups the same way, bounded: a name that does not resolve must not stop a gateway.
 */
async function warmUp(sources: Array<Pick<EndpointSource, 'initialized'>>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(sources.map((s) => s.initialized())),
    new Promise((r) => (timer = setTimeout(r, DISCOVERY_WARM_UP_MS))),
  ]);
  clearTimeout(timer);
}

/** With `managementServer` set: the last applied snapshot, loaded; the hub client is started later. */
async function loadManagedState(
  primary: Primary,
  changes: ConfigChanges,
  stateDir: string,
  svid: GatewaySvid | undefined,
): Promise<ManagedGateway | undefined> {
  const ms = primary.current.config.managementServer;
  if (!ms) return undefined;
  const managed = new ManagedGateway(primary, changes, stateDir, ms, systemRng, svid);
  await managed.load();
  return managed;
}

/**
 * Renews the SVID under traffic: listeners re-read the rewritten files in every worker (existing
 * connections keep theirs), east-west clusters move to new pools presenting the new SVID.
 */
function svidRenewer(
  svid: GatewaySvid,
  at: { primary: Primary; managed: ManagedGateway; config: Config; stateDir: string },
): SvidRenewer {
  const ms = at.config.managementServer!;
  const hub = new HubConnection(hubConnectionOptions(ms, at.config.gateway.name));
  return new SvidRenewer(svid, {
    hub,
    cluster: clusterOf(hub.id, at.config.gateway.labels),
    files: svidFiles(at.stateDir),
    rng: systemRng,
    renewed: async (next) => {
      await reloadListenerCertificates(at.primary);
      await at.managed.renewedSvid(next);
    },
    rebundled: async (next) => {
      await reloadListenerCertificates(at.primary);
      at.managed.useSvid(next);
    },
  });
}

/** Every worker's TLS listeners re-read their files (open connections keep what they have). */
async function reloadListenerCertificates(primary: Primary): Promise<void> {
  const replies = await primary.collect<{ t: 'certs-reply'; id: number; failed: string[] }>('reload-certs');
  const failed = replies.flatMap((r) => r.failed);
  if (failed.length) throw new Error(`listeners ${failed.join(', ')} could not reload the SVID files`);
}

/** With managementServer.svid: the SVID this start serves with (see bootstrapSvid); a failure stops the start. */
async function startupSvid(config: Config, stateDir: string): Promise<GatewaySvid | undefined> {
  const ms = config.managementServer;
  if (!ms?.svid) return undefined;
  const hub = new HubConnection(hubConnectionOptions(ms, config.gateway.name));
  try {
    return await bootstrapSvid(hub, clusterOf(hub.id, config.gateway.labels), svidFiles(stateDir), systemRng);
  } catch (e) {
    throw new StartupError([{ path: 'managementServer.svid', message: (e as Error).message }]);
  } finally {
    hub.close();
  }
}

function managedReadiness(managed: ManagedGateway, url: string): () => Record<string, unknown> {
  return () => ({ managementServer: { url, connected: managed.client.connected, applied: managed.applied ?? null } });
}
