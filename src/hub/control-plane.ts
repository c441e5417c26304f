import { logger } from '../observability/logger.js';
import { readFile } from 'node:fs/promises';
import { ConfigStore } from '../control/store/config-store.js';
import { ConfigService } from '../control/config-service.js';
import { parseConfigText } from '../config/load.js';
import type { ConfigError } from '../config/validate.js';
import { isLoopbackHost, splitAddress } from '../common/address.js';
import { checkHubConfig, validateHubConfig, type HubConfig } from './config.js';
import { Fleet } from './fleet.js';
import { HubServer } from './server.js';
import { msOf } from '../config/duration.js';
import { MeshCa, MeshCaError } from './ca/mesh-ca.js';
import { EtcdHubStore } from './etcd-store.js';
import { EtcdReplication } from './etcd-replication.js';
import type { CaStateStore } from './ca/ca-store.js';

export interface RunningHub {
  address: string;
  store: ConfigStore<HubConfig>;
  fleet: Fleet;
  stop(): Promise<void>;
}

export class HubStartupError extends Error {
  constructor(readonly errors: ConfigError[]) {
    super(errors.map((e) => `${e.path}: ${e.message}`).join('\n'));
  }
}

async function loadHubFile(file: string): Promise<HubConfig> {
  const parsed = parseConfigText(await readFile(file, 'utf8'));
  if (!parsed.ok) throw new HubStartupError([{ path: '(syntax)', message: parsed.message }]);
  const v = validateHubConfig(parsed.value);
  if (!v.ok) throw new HubStartupError(v.errors);
  return v.config;
}

/** Start the management server: persisted fleet state, or the file as the seed on first start. */
export async function startHub(opts: { configFile: string; stateDir: string }): Promise<RunningHub> {
  const store = new ConfigStore<HubConfig>(opts.stateDir, 'hub-state.json');
  if (!(await store.load())) await store.commit(await loadHubFile(opts.configFile), 'file');
  else {
    const errors = await store.revalidate(checkHubConfig);
    if (errors.length) throw new HubStartupError(errors);
  }
  const current = store.current!;
  const { hub } = current.config;
  if (!isLoopbackHost(splitAddress(hub.address).host) && !hub.tokens?.length && !hub.tls?.clientCa) {
    if (!hub.insecure)
      throw new HubStartupError([
        {
          path: 'hub.address',
          message: 'a non-loopback hub needs hub.tokens or hub.tls.clientCa (hub.insecure: true overrides)',
        },
      ]);
    logger.warn(
      { address: hub.address },
      'hub.insecure: the hub API is served WITHOUT authentication on a non-loopback address: anyone who reaches it can change every gateway',
    );
  }
  // Replicas sharing the document through etcd write every change through to it before storing it.
  const etcdSettings = hub.store?.etcd;
  const etcd = etcdSettings ? new EtcdHubStore({ ...etcdSettings, timeoutMs: msOf(etcdSettings).timeout }) : undefined;
  const replication = etcd && new EtcdReplication(etcd.client, etcdSettings!.prefix, msOf(etcdSettings!).leaderTtl);
  // A CA kept in etcd needs etcd at start; without one, a replica starts on its local state and joins later.
  if (replication && hub.ca)
    await replication.start().catch((e: Error) => {
      throw new HubStartupError([{ path: 'hub.store.etcd', message: `cannot reach etcd at start: ${e.message}` }]);
    });
  const ca = await openCa(hub.ca, replication?.caStore() ?? opts.stateDir);
  const fleet = new Fleet(
    current.config,
    current.version,
    ca && (() => ({ bundle: ca.bundlePem, signer: ca.signerFingerprint })),
  );
  // The hub's one change path: a new version is live once the fleet has been sent it.
  const changes = new ConfigService<HubConfig>({
    store,
    validate: validateHubConfig,
    publish: async (v) => (fleet.setConfig(v.config, v.version), []),
    beforeCommit: etcd ? (config, source) => etcd.writeThrough(config, source) : undefined,
  });
  await etcd?.start(changes);
  const server = new HubServer(store, fleet, changes, ca, replication);
  const address = await server.listen();
  let stopped = false;
  if (replication) {
    const selfUrl = etcdSettings!.advertiseUrl ?? `${hub.tls ? 'https' : 'http'}://${address}`;
    // Registrations are shared, CA steps are adopted, and one replica is elected to sign; each step
    // retried while etcd cannot be reached (the hub serves meanwhile, on what it has).
    void (async () => {
      const retried = async (what: string, step: () => Promise<void>) => {
        while (!stopped) {
          try {
            return await step();
          } catch (e) {
            logger.warn({ err: (e as Error).message, step: what }, 'etcd: replica setup failed; retrying');
            await new Promise((r) => setTimeout(r, 1000).unref());
          }
        }
      };
      if (!replication.secret) await retried('replica secret', () => replication.start());
      replication.onRegistrationsLost = () => fleet.registerAgain();
      fleet.onRegistered = (id, report) =>
        void replication
          .register(id, report)
          .catch((e: Error) => logger.warn({ err: e.message }, 'etcd: registration not shared'));
      await retried('registrations', () =>
        replication.followRegistrations(
          (id, report) => fleet.remoteReport(id, report),
          (id) => fleet.remoteGone(id),
        ),
      );
      if (ca)
        await retried('CA watch', () =>
          replication.watchCa(
            (state) =>
              void ca.adopt(state).then(
                () => server.caChanged(),
                (e: Error) => logger.error({ err: e.message }, 'etcd: cannot use the CA another replica stored'),
              ),
          ),
        );
      await retried('election', () => replication.campaign(selfUrl, () => {}));
    })();
  }
  return {
    address,
    store,
    fleet,
    stop: async () => {
      stopped = true;
      await server.close();
      await replication?.stop();
      await etcd?.stop();
    },
  };
}

/**
 * The mesh CA of `hub.ca`, read once at start: a change to `hub.ca` takes effect at the next start
 * (a generated CA rotates under traffic through POST /ca/rotation instead).
 */
async function openCa(ca: HubConfig['hub']['ca'], stored: string | CaStateStore): Promise<MeshCa | undefined> {
  if (!ca) return undefined;
  try {
    return await MeshCa.open({ ...ca, svidTtlMs: msOf(ca).svidTtl }, stored);
  } catch (e) {
    if (e instanceof MeshCaError) throw new HubStartupError(e.errors);
    throw e;
  }
}
