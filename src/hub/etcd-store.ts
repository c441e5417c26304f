import { readFileSync } from 'node:fs';
import { noop } from 'cockatiel';
import { Etcd3, type IOptions, type Watcher } from 'etcd3';
import { ApiError } from '../control/api-error.js';
import type { ConfigChanges } from '../control/config-service.js';
import { configHash } from '../control/store/config-store.js';
import { logger } from '../observability/logger.js';
import type { HubConfig } from './config.js';

const log = logger.child({ component: 'hub-etcd' });
const SOURCE = 'etcd';

/** `hub.store.etcd` in the hub's config. */
export interface EtcdStoreSettings {
  endpoints: string[];
  /** Key prefix of this hub's data (several hubs may share one etcd). */
  prefix: string;
  /** Deadline of one etcd call, ms. */
  timeoutMs: number;
  tls?: { ca: string; cert?: string; key?: string };
}

/**
 * The document as stored in etcd: the hub config, its hash (what a replica compares with its own) and
 * its version number, which every replica stores it as (so `ETag`/`If-Match` mean the same at each).
 */
interface StoredDocument {
  hash: string;
  config: HubConfig;
  version?: number;
}

/**
 * The hub's document kept in etcd, so several hub replicas share it. Every change is written to etcd
 * before it is stored locally (the config service's beforeCommit) in a transaction that compares the
 * document key's mod revision with the one this replica last saw: two replicas changing at once cannot
 * both commit on the same base (the second gets 409 and adopts the first's change). Every replica
 * watches the key and adopts what another wrote, through the change path like any source. etcd away:
 * writes are refused with 503 (so replicas cannot diverge); reads and the watch protocol keep serving
 * the current version, and the replica catches up when etcd returns.
 *
 * What each replica keeps to itself: its own `hub.address`, `hub.tls` and `hub.store` (where it
 * listens, its certificate, how it reaches etcd); the rest of the document is shared.
 */
export class EtcdHubStore {
  readonly #client: Etcd3;
  readonly #key: string;
  /** The mod revision of the document this replica's config is (0: none seen). */
  #modRevision = 0;
  /** The version number of the document at #modRevision (0: none seen). */
  #docVersion = 0;
  /** The document being adopted (sync): the version number its commit takes. */
  #adopting: { rev: number; version: number } | undefined;
  #changes: ConfigChanges<HubConfig> | undefined;
  #watcher: Watcher | undefined;
  #syncing: Promise<void> = Promise.resolve();
  #reachable = false;
  #stopped = false;

  constructor(settings: EtcdStoreSettings) {
    this.#key = `${settings.prefix.replace(/\/+$/, '')}/document`;
    const options: IOptions = {
      hosts: settings.endpoints,
      dialTimeout: settings.timeoutMs,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + settings.timeoutMs }),
      // Fail fast and let the change path answer 503: no retries behind the caller's back.
      faultHandling: { host: () => noop, global: noop },
    };
    if (settings.tls) {
      options.credentials = {
        rootCertificate: readFileSync(settings.tls.ca),
        ...(settings.tls.cert ? { certChain: readFileSync(settings.tls.cert) } : {}),
        ...(settings.tls.key ? { privateKey: readFileSync(settings.tls.key) } : {}),
      };
    }
    this.#client = new Etcd3(options);
  }

  /** The etcd client, for what replicas share besides the document (etcd-replication.ts). */
  get client(): Etcd3 {
    return this.#client;
  }

  /** True while the last call to etcd succeeded. */
  get reachable(): boolean {
    return this.#reachable;
  }

  /**
   * Follow the shared document: adopt it (or seed it from ours) now, and on every change another
   * replica writes. etcd away at start: the hub starts on its local state and catches up (retrying
   * every second) once etcd answers; until then writes are refused.
   */
  async start(changes: ConfigChanges<HubConfig>): Promise<void> {
    this.#changes = changes;
    try {
      await this.#syncNow();
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'etcd unreachable at start: serving the local state, refusing writes');
      this.#retryUntilSynced();
    }
    void this.#watch();
  }

  #retryUntilSynced(): void {
    const timer = setInterval(() => {
      if (this.#stopped) return clearInterval(timer);
      this.#syncNow().then(
        () => clearInterval(timer),
        () => {},
      );
    }, 1000);
    timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#watcher?.cancel().catch(() => {});
    this.#client.close();
  }

  /**
   * Write a change through to etcd before it is stored locally (beforeCommit): 409 when another replica
   * wrote first (its change is adopted next), 503 when etcd cannot be reached.
   */
  async writeThrough(config: HubConfig, source: string): Promise<void | { version: number }> {
    // Adopting the shared document: from now on our config is that revision, under its number.
    if (source.startsWith(`${SOURCE}:`)) {
      this.#modRevision = Number(source.slice(SOURCE.length + 1));
      const adopting = this.#adopting?.rev === this.#modRevision ? this.#adopting : undefined;
      this.#docVersion = adopting?.version ?? this.#docVersion;
      return adopting?.version ? { version: adopting.version } : undefined;
    }
    // The next number after both the shared document's and ours; the seed keeps ours.
    const current = this.#changes?.current.version ?? 0;
    const version = source === 'seed' ? current : Math.max(this.#docVersion, current) + 1;
    const body = JSON.stringify({ hash: configHash(shared(config)), config, version } satisfies StoredDocument);
    let result: Awaited<ReturnType<ReturnType<Etcd3['if']>['commit']>>;
    try {
      result = await this.#client
        .if(this.#key, 'Mod', '==', this.#modRevision)
        .then(this.#client.put(this.#key).value(body))
        .commit();
      this.#reachable = true;
    } catch (e) {
      this.#reachable = false;
      throw new ApiError(503, 'store unavailable', {
        error: 'store_unavailable',
        message: `etcd is unreachable (${(e as Error).message}); the change is refused so hub replicas do not diverge`,
      });
    }
    if (!result.succeeded) {
      this.#syncSoon();
      throw new ApiError(409, 'conflict', {
        error: 'conflict',
        message: 'another hub replica changed the document first; read it again and retry',
      });
    }
    this.#modRevision = Number(result.header.revision);
    this.#docVersion = version;
    return { version };
  }

  /** Watch the document key; a put by another replica is adopted. The watcher reconnects by itself. */
  async #watch(): Promise<void> {
    while (!this.#stopped) {
      try {
        const watcher = await this.#client.watch().key(this.#key).create();
        this.#watcher = watcher;
        watcher.on('put', (kv) => {
          if (Number(kv.mod_revision) !== this.#modRevision) this.#syncSoon();
        });
        watcher.on('connected', () => this.#syncSoon());
        return;
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'etcd watch failed; retrying');
        await new Promise((r) => setTimeout(r, 1000).unref());
      }
    }
  }

  #syncSoon(): void {
    this.#syncing = this.#syncing
      .then(() => this.#syncNow())
      .catch((e: Error) => log.warn({ err: e.message }, 'etcd sync failed'));
  }

  /** Adopt etcd's document if it differs from ours; seed it from ours when etcd has none. */
  async #syncNow(): Promise<void> {
    let kv: { value: Buffer; mod_revision: string } | null;
    try {
      const res = await this.#client.get(this.#key).exec();
      kv = res.kvs[0] ?? null;
      this.#reachable = true;
    } catch (e) {
      this.#reachable = false;
      throw e;
    }
    const changes = this.#changes!;
    if (!kv) {
      this.#modRevision = 0;
      await this.writeThrough(changes.current.config, 'seed');
      log.info({ version: changes.current.version }, 'seeded etcd with the hub document');
      return;
    }
    const rev = Number(kv.mod_revision);
    const doc = JSON.parse(kv.value.toString()) as StoredDocument;
    if (doc.hash === configHash(shared(changes.current.config))) {
      this.#modRevision = rev;
      this.#docVersion = doc.version ?? this.#docVersion;
      return;
    }
    this.#adopting = { rev, version: doc.version ?? 0 };
    // By the time this runs in the change queue a local write may have moved past rev: keep it then.
    const adopt = (draft: HubConfig) => (this.#modRevision >= rev ? draft : withLocalHub(doc.config, draft));
    const r = await changes.change(SOURCE, `sync etcd revision ${rev}`, undefined, adopt, `${SOURCE}:${rev}`);
    log.info({ version: r.version, etcdRevision: rev }, 'adopted the hub document from etcd');
  }
}

/** The part of a hub document every replica shares: all but each replica's own address, TLS and store. */
function shared(config: HubConfig): unknown {
  const { address: _a, tls: _t, store: _s, ...hub } = config.hub;
  return { ...config, hub };
}

/** Another replica's document with this replica's own address, TLS and store kept. */
function withLocalHub(other: HubConfig, local: HubConfig): HubConfig {
  return { ...other, hub: { ...other.hub, address: local.hub.address, tls: local.hub.tls, store: local.hub.store } };
}
