import { randomBytes } from 'node:crypto';
import type { Etcd3, Watcher } from 'etcd3';
import { logger } from '../observability/logger.js';
import type { CaState, CaStateStore } from './ca/ca-store.js';
import type { GatewayReport } from './protocol.js';

const log = logger.child({ component: 'hub-replicas' });
const RETRY_MS = 1000;

/**
 * What hub replicas on one etcd share besides the document (etcd-store.ts): the generated CA, the
 * elected replica, a secret to vouch for each other, and the fleet's registrations.
 *
 * - **The CA** (`<prefix>/ca`): one JSON value with every root in use. The first root is created
 *   only if none exists (a transaction on the key's create revision), so replicas starting together
 *   agree on it; rotation steps are taken by the elected replica; every replica watches the key and
 *   adopts what is written.
 * - **The elected replica** (`<prefix>/leader`, held on a lease of `leaderTtl`, see campaign): it signs SVIDs and takes rotation steps; the others forward those requests to it.
 *   Killed, its lease runs out and another replica is elected within `leaderTtl`.
 * - **The replica secret** (`<prefix>/replica-secret`, created once): a forwarded request carries it
 *   and the caller's identity as the forwarding replica authenticated it.
 * - **Registrations** (`<prefix>/fleet/<gateway id>`): each gateway's last report, written by the
 *   replica it reports to, on that replica's lease (a replica that dies takes its gateways'
 *   registrations with it once the lease ends; they report again to another replica). Every replica
 *   watches them, so virtual destinations and fleet-wide data see the whole fleet whichever replica
 *   a gateway talks to.
 */
export class EtcdReplication {
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #ttlSeconds: number;
  readonly #watchers: Watcher[] = [];
  readonly #timers: NodeJS.Timeout[] = [];
  /** The lease this replica campaigns on (holds `<prefix>/leader` with, once elected); renewed when lost. */
  #electionLease: ReturnType<Etcd3['lease']> | undefined;
  /** The elected replica's URL as the election observer last reported it (it may lag our own win). */
  #observedLeader: string | undefined;
  #selfUrl = '';
  #elected = false;
  #secret = '';
  #registrationsLease: ReturnType<Etcd3['lease']> | undefined;
  #stopped = false;

  constructor(client: Etcd3, prefix: string, leaderTtlMs: number) {
    this.#client = client;
    this.#prefix = prefix.replace(/\/+$/, '');
    // etcd leases count whole seconds; its minimum is about 2 s with default heartbeats.
    this.#ttlSeconds = Math.max(2, Math.round(leaderTtlMs / 1000));
  }

  /** The URL of the elected replica, when one is known. */
  get leaderUrl(): string | undefined {
    return this.#elected ? this.#selfUrl : this.#observedLeader;
  }

  /** This replica is the elected one. */
  get elected(): boolean {
    return this.#elected;
  }

  /** The secret replicas vouch for each other with (see forwarding in server.ts). */
  get secret(): string {
    return this.#secret;
  }

  /** The shared secret, created by whichever replica comes first. */
  async start(): Promise<void> {
    const key = `${this.#prefix}/replica-secret`;
    const candidate = randomBytes(32).toString('hex');
    const r = await this.#client
      .if(key, 'Create', '==', 0)
      .then(this.#client.put(key).value(candidate))
      .else(this.#client.get(key))
      .commit();
    this.#secret = r.succeeded ? candidate : (r.responses[0]?.response_range?.kvs[0]?.value.toString() ?? '');
    if (!this.#secret) throw new Error('etcd: cannot read the replica secret');
  }

  /**
   * Campaign to be the elected replica (advertising `selfUrl`), and follow who is. The elected one
   * holds `<prefix>/leader` on its own lease: created only when absent (a transaction), so exactly one
   * holds it; gone with the lease when its holder stops renewing it (a crash), at which point the
   * others, watching the key, race to create it again. A check every second covers a missed event.
   */
  async campaign(selfUrl: string, onChange: () => void): Promise<void> {
    this.#selfUrl = selfUrl;
    const key = `${this.#prefix}/leader`;
    const setElected = (elected: boolean) => {
      if (elected === this.#elected) return;
      this.#elected = elected;
      log.info(
        { url: selfUrl, elected },
        elected ? 'elected: this replica signs SVIDs and takes CA rotation steps' : 'no longer the elected replica',
      );
      onChange();
    };
    const tryAcquire = async () => {
      if (this.#stopped) return;
      if (!this.#electionLease) {
        const l = this.#client.lease(this.#ttlSeconds, { autoKeepAlive: true });
        l.on('lost', () => {
          if (this.#electionLease === l) this.#electionLease = undefined;
          setElected(false);
        });
        this.#electionLease = l;
      }
      const lease = this.#electionLease;
      const r = await this.#client
        .if(key, 'Create', '==', 0)
        .then(lease.put(key).value(selfUrl))
        .else(this.#client.get(key))
        .commit();
      if (r.succeeded) {
        this.#observedLeader = selfUrl;
        return setElected(true);
      }
      const holder = r.responses[0]?.response_range?.kvs[0];
      this.#observedLeader = holder?.value.toString();
      // Still ours after a restart of the watch: the key is on our current lease.
      setElected(!!holder && holder.lease === (await lease.grant()));
    };
    const watcher = await this.#client.watch().key(key).create();
    watcher.on('delete', () => {
      this.#observedLeader = undefined;
      setElected(false);
      void tryAcquire().catch(() => {});
    });
    watcher.on('put', (kv) => {
      this.#observedLeader = kv.value.toString();
      onChange();
    });
    this.#watchers.push(watcher);
    await tryAcquire();
    this.#timers.push(setInterval(() => void tryAcquire().catch(() => setElected(false)), RETRY_MS).unref());
  }

  /** The generated CA, kept in etcd. */
  caStore(): CaStateStore {
    const key = `${this.#prefix}/ca`;
    return {
      load: async () => {
        const text = await this.#client.get(key).string();
        return text ? (JSON.parse(text) as CaState) : undefined;
      },
      save: async (state, opts = {}) => {
        const body = JSON.stringify(state);
        if (!opts.ifAbsent) {
          await this.#client.put(key).value(body);
          return state;
        }
        const r = await this.#client
          .if(key, 'Create', '==', 0)
          .then(this.#client.put(key).value(body))
          .else(this.#client.get(key))
          .commit();
        return r.succeeded ? state : (JSON.parse(String(r.responses[0]?.response_range?.kvs[0]?.value)) as CaState);
      },
    };
  }

  /** Call `adopt` with every CA state written to etcd (by the elected replica). */
  async watchCa(adopt: (state: CaState) => void): Promise<void> {
    const watcher = await this.#client.watch().key(`${this.#prefix}/ca`).create();
    watcher.on('put', (kv) => adopt(JSON.parse(kv.value.toString()) as CaState));
    this.#watchers.push(watcher);
  }

  /** Called when this replica's registrations were lost with its lease (etcd away for longer than it). */
  onRegistrationsLost?: () => void;

  /** Share a gateway's report (registration) on this replica's lease. */
  async register(id: string, report: GatewayReport): Promise<void> {
    if (!this.#registrationsLease) {
      const lease = this.#client.lease(this.#ttlSeconds * 2, { autoKeepAlive: true });
      lease.on('lost', () => {
        if (this.#registrationsLease !== lease) return;
        this.#registrationsLease = undefined;
        log.warn("etcd: the lease of this replica's registrations was lost; registering its gateways again");
        // After the current call stack: the next register makes a new lease.
        setTimeout(() => this.onRegistrationsLost?.(), RETRY_MS).unref();
      });
      this.#registrationsLease = lease;
    }
    await this.#registrationsLease.put(`${this.#prefix}/fleet/${id}`).value(JSON.stringify(report));
  }

  /**
   * Every registration in etcd now (`onPut` each), and from then on each one written or gone.
   * A replica's own writes come back too: the fleet ignores reports equal to what it has.
   */
  async followRegistrations(
    onPut: (id: string, report: GatewayReport) => void,
    onDelete: (id: string) => void,
  ): Promise<void> {
    const prefix = `${this.#prefix}/fleet/`;
    const all = await this.#client.getAll().prefix(prefix).strings();
    for (const [key, value] of Object.entries(all)) onPut(key.slice(prefix.length), JSON.parse(value));
    const watcher = await this.#client.watch().prefix(prefix).create();
    watcher.on('put', (kv) => onPut(kv.key.toString().slice(prefix.length), JSON.parse(kv.value.toString())));
    watcher.on('delete', (kv) => onDelete(kv.key.toString().slice(prefix.length)));
    this.#watchers.push(watcher);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#watchers.map((w) => w.cancel().catch(() => {})));
    for (const t of this.#timers) clearInterval(t);
    // Resign: the key goes with the lease, and another replica is elected at once.
    await this.#electionLease?.revoke().catch(() => {});
    await this.#registrationsLease?.revoke().catch(() => {});
  }
}
