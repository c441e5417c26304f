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
  const ca = await openCa(hub.ca, opts.stateDir);
  const fleet = new Fleet(
    current.config,
    current.version,
    ca && (() => ({ bundle: ca.bundlePem, signer: ca.signerFingerprint })),
  );
  // Replicas sharing the document through etcd write every change through to it before storing it.
  const etcdSettings = hub.store?.etcd;
  const etcd = etcdSettings ? new EtcdHubStore({ ...etcdSettings, timeoutMs: msOf(etcdSettings).timeout }) : undefined;
  // The hub's one change path: a new version is live once the fleet has been sent it.
  const changes = new ConfigService<HubConfig>({
    store,
    validate: validateHubConfig,
    publish: async (v) => (fleet.setConfig(v.config, v.version), []),
    beforeCommit: etcd ? (config, source) => etcd.writeThrough(config, source) : undefined,
  });
  await etcd?.start(changes);
  const server = new HubServer(store, fleet, changes, ca);
  const address = await server.listen();
  return {
    address,
    store,
    fleet,
    stop: async () => {
      await server.close();
      await etcd?.stop();
    },
  };
}

/**
 * The mesh CA of `hub.ca`, read once at start: a change to `hub.ca` takes effect at the next start
 * (a generated CA rotates under traffic through POST /ca/rotation instead).
 */
async function openCa(ca: HubConfig['hub']['ca'], stateDir: string): Promise<MeshCa | undefined> {
  if (!ca) return undefined;
  try {
    return await MeshCa.open({ ...ca, svidTtlMs: msOf(ca).svidTtl }, stateDir);
  } catch (e) {
    if (e instanceof MeshCaError) throw new HubStartupError(e.errors);
    throw e;
  }
}
