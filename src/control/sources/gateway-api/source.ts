import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Config } from '../../../config/schema/index.js';
import type { ConfigChanges } from '../../config-service.js';
import { writeFileAtomic } from '../../store/config-store.js';
import {
  KubeApiError,
  kubeRequest,
  loadKubeConfig,
  readBody,
  ResourceWatch,
  type ResourceWatchOptions,
} from '../../../common/kube-client.js';
import { systemRng } from '../../../common/clock.js';
import { logger } from '../../../observability/logger.js';
import { applyGatewayApi } from './apply.js';
import {
  GATEWAY_API_PREFIX,
  translate,
  type GatewayApiSettings,
  type RouteParentStatus,
  type Translation,
} from './translate.js';
import { gatewayClassStatus, gatewayStatus, routeStatus } from './status.js';
import type { GatewayApiObjects, ObjectMeta } from './objects.js';

type Collection = keyof GatewayApiObjects;
type KubeItem = { metadata: ObjectMeta; status?: unknown; [k: string]: unknown };

/** What is watched, cluster-wide: the collection's path (Secrets: TLS ones only). */
const COLLECTIONS: Record<
  Collection,
  { path: string; statusPath?: (namespace: string | undefined, name: string) => string }
> = {
  gatewayClasses: {
    path: '/apis/gateway.networking.k8s.io/v1/gatewayclasses',
    statusPath: (_ns, name) => `/apis/gateway.networking.k8s.io/v1/gatewayclasses/${name}/status`,
  },
  gateways: {
    path: '/apis/gateway.networking.k8s.io/v1/gateways',
    statusPath: (ns, name) => `/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/gateways/${name}/status`,
  },
  httpRoutes: {
    path: '/apis/gateway.networking.k8s.io/v1/httproutes',
    statusPath: (ns, name) => `/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/httproutes/${name}/status`,
  },
  referenceGrants: { path: '/apis/gateway.networking.k8s.io/v1beta1/referencegrants' },
  services: { path: '/api/v1/services' },
  secrets: { path: `/api/v1/secrets?fieldSelector=${encodeURIComponent('type=kubernetes.io/tls')}` },
  namespaces: { path: '/api/v1/namespaces' },
};

/** Does the config carry exactly the Gateway API routes and listeners a translation made? */
function sameNames(config: Config, t: Translation): boolean {
  const names = (items: Array<{ name: string }>) =>
    items
      .map((i) => i.name)
      .filter((n) => n.startsWith(GATEWAY_API_PREFIX))
      .sort()
      .join(',');
  return names(config.routes) === names(t.routes) && names(config.listeners) === names(t.listeners);
}

function routeKey(r: { metadata: ObjectMeta }): string {
  return `${r.metadata.namespace ?? 'default'}/${r.metadata.name}`;
}

/** Refused for what the route says (not for where it attaches): its earlier version may stand in. */
function isRefusedForContent(p: RouteParentStatus): boolean {
  return p.conditions.some((c) => c.type === 'Accepted' && c.status === 'False' && c.reason === 'UnsupportedValue');
}

/** A started source: its settings, one watch per collection and what each has listed. */
interface Running {
  key: string;
  settings: GatewayApiSettings;
  watches: Array<ResourceWatch<KubeItem>>;
  objects: Map<Collection, Map<string, KubeItem>>;
}

/** Wait after a watch event before translating, so a burst (kubectl apply of a directory) is one change. */
const DEBOUNCE_MS = 100;
/** Status writes that meet 409 Conflict read the object again and retry this many times. */
const STATUS_RETRIES = 3;

/**
 * The Gateway API as a config source (`gateway.gatewayApi`): watches GatewayClasses, Gateways,
 * HTTPRoutes, ReferenceGrants, Services, TLS Secrets and Namespaces cluster-wide (one list+watch each,
 * in the primary), and after every burst of changes translates the whole set (translate.ts), applies it
 * through the config service like any source (apply.ts: validated, versioned, persisted, published and
 * acknowledged) and writes each object's status back through its status subresource (status.ts).
 *
 * Certificates of HTTPS listeners (certificateRefs Secrets) are written under the state directory
 * before the config that names them is applied. Syncs never overlap: a change during one makes one more.
 */
export class GatewayApiSource {
  readonly #changes: ConfigChanges;
  readonly #stateDir: string;
  readonly #options: ResourceWatchOptions;
  #running: Running | undefined;
  #kc: Promise<KubeConfig> | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #syncing: Promise<void> | undefined;
  #again = false;
  /** Each HTTPRoute's last version accepted by all our parents ("namespace/name"), to stand in for a refused edit. */
  readonly #lastGood = new Map<string, GatewayApiObjects['httpRoutes'][number]>();
  /** The last translation applied (its statuses and the certificates written), for status and tests. */
  last: { translation: Translation; version?: number; error?: string } | undefined;

  constructor(changes: ConfigChanges, stateDir: string, options: Partial<ResourceWatchOptions> = {}) {
    this.#changes = changes;
    this.#stateDir = stateDir;
    this.#options = {
      retryBaseMs: 2000,
      retryMaxMs: 30_000,
      listTimeoutMs: 30_000,
      watchSilenceGraceMs: 30_000,
      rng: systemRng,
      ...options,
    };
  }

  /** Start, restart or stop with the config's `gateway.gatewayApi` (and the Kubernetes credentials). */
  reconcile(config: Config): void {
    const block = config.gateway.gatewayApi;
    const kubeconfig = config.gateway.kubernetes?.kubeconfig;
    const key = JSON.stringify({ block, kubeconfig });
    if (this.#running?.key === key) {
      // Another source replaced the whole config (PUT /config, SIGHUP) without our resources: put them back.
      if (this.last && !this.last.error && !sameNames(config, this.last.translation)) this.#schedule();
      return;
    }
    this.stop();
    if (!block) return;
    const certDir = join(this.#stateDir, 'gateway-api');
    const settings: GatewayApiSettings = {
      ...block,
      certificateFile: ({ namespace, name }, part) => join(certDir, `${namespace}.${name}.${part}`),
    };
    const objects = new Map<Collection, Map<string, KubeItem>>();
    this.#kc = loadKubeConfig(kubeconfig);
    const watches = (Object.keys(COLLECTIONS) as Collection[]).map((collection) => {
      const items = new Map<string, KubeItem>();
      objects.set(collection, items);
      const keyOf = (o: KubeItem) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      return new ResourceWatch<KubeItem>(
        () => this.#kc!,
        COLLECTIONS[collection].path,
        {
          listed: (list) => {
            items.clear();
            for (const o of list) items.set(keyOf(o), o);
            this.#schedule();
          },
          changed: (type, o) => {
            if (type === 'BOOKMARK') return;
            if (type === 'DELETED') items.delete(keyOf(o));
            else items.set(keyOf(o), o);
            this.#schedule();
          },
          succeeded: () => {},
          failed: (e) => logger.warn({ collection, err: e.message }, 'gateway api: watch failed; retrying'),
        },
        this.#options,
      );
    });
    this.#running = { key, settings, watches, objects };
  }

  /**
   * Why the admin API may not write a resource, if it is one of ours (`gwapi.*`): every sync replaces
   * those, so an edit would be lost; the Kubernetes objects are where to change them.
   */
  guard(kind: string, name: string | undefined): string | undefined {
    return name?.startsWith(GATEWAY_API_PREFIX)
      ? `${kind.slice(0, -1)} "${name}" is made from Gateway API objects; change those`
      : undefined;
  }

  /** Resolves once every collection was listed once and the first translation was applied (never rejects). */
  async initialized(): Promise<void> {
    const running = this.#running;
    if (!running) return;
    await Promise.all(running.watches.map((w) => w.first));
    clearTimeout(this.#debounce);
    this.#debounce = undefined;
    await this.#sync();
  }

  stop(): void {
    for (const w of this.#running?.watches ?? []) w.stop();
    this.#running = undefined;
    clearTimeout(this.#debounce);
    this.#debounce = undefined;
  }

  #schedule(): void {
    this.#debounce ??= setTimeout(() => {
      this.#debounce = undefined;
      void this.#sync();
    }, DEBOUNCE_MS);
  }

  /** Translate, apply, write statuses; one at a time (a change meanwhile runs one more). */
  async #sync(): Promise<void> {
    if (this.#syncing) {
      this.#again = true;
      return this.#syncing;
    }
    this.#syncing = (async () => {
      do {
        this.#again = false;
        try {
          await this.#syncOnce();
        } catch (e) {
          logger.error({ err: e }, 'gateway api: sync failed');
        }
      } while (this.#again && this.#running);
    })();
    try {
      await this.#syncing;
    } finally {
      this.#syncing = undefined;
    }
  }

  /**
   * One sync. An HTTPRoute refused for its content (an unsupported or conflicting filter, or a route
   * the config validation refuses) leaves the live config as it was: its last accepted version is
   * translated in its place, while its status reports the new generation refused.
   */
  async #syncOnce(): Promise<void> {
    const running = this.#running;
    if (!running) return;
    const objects = Object.fromEntries(
      [...running.objects].map(([c, m]) => [c, [...m.values()]]),
    ) as unknown as GatewayApiObjects;
    const current = translate(objects, running.settings);
    // Certificates first: the config about to be applied names these files.
    await this.#writeCertificates(current, running.settings);
    const refusedForContent = new Set(
      [...current.status.httpRoutes].filter(([, parents]) => parents.some(isRefusedForContent)).map(([k]) => k),
    );
    const withLastGood = (refused: ReadonlyMap<string, string>): GatewayApiObjects => ({
      ...objects,
      httpRoutes: objects.httpRoutes.map((r) => {
        const k = routeKey(r);
        return (refusedForContent.has(k) || refused.has(k)) && this.#lastGood.has(k) ? this.#lastGood.get(k)! : r;
      }),
    });
    const standsIn = [...refusedForContent].some((k) => this.#lastGood.has(k));
    const result = await applyGatewayApi(this.#changes, (refused) => {
      // Nothing refused and nothing standing in: the translation made above is the one to apply.
      if (refused.size === 0 && !standsIn) return current;
      // A route with an accepted version stands in with it; one without stays refused.
      const stillRefused = new Map([...refused].filter(([k]) => !this.#lastGood.has(k)));
      return translate(withLastGood(refused), running.settings, { refused: stillRefused });
    });
    if (this.#running !== running) return;
    if (result.error)
      logger.warn({ error: result.error }, 'gateway api: translation refused; the live config is unchanged');
    // Statuses speak of the objects as they are now, not of the versions standing in for them.
    const statuses = result.translation.status.httpRoutes;
    for (const k of refusedForContent) statuses.set(k, current.status.httpRoutes.get(k)!);
    for (const [k, message] of result.refused) {
      const now = translate(objects, running.settings, { refused: new Map([[k, message]]) }).status.httpRoutes.get(k);
      if (now) statuses.set(k, now);
    }
    this.#rememberAccepted(objects, statuses);
    this.last = result;
    await this.#writeStatuses(result.translation, running);
  }

  /** Keep each HTTPRoute whose every parent of ours accepted it, as the version to fall back on. */
  #rememberAccepted(objects: GatewayApiObjects, statuses: Translation['status']['httpRoutes']): void {
    const present = new Set<string>();
    for (const r of objects.httpRoutes) {
      const k = routeKey(r);
      present.add(k);
      const parents = statuses.get(k);
      if (
        parents?.length &&
        parents.every((p) => p.conditions.some((c) => c.type === 'Accepted' && c.status === 'True'))
      )
        this.#lastGood.set(k, r);
    }
    for (const k of this.#lastGood.keys()) if (!present.has(k)) this.#lastGood.delete(k);
  }

  async #writeCertificates(t: Translation, settings: GatewayApiSettings): Promise<void> {
    if (!t.certificates.length) return;
    await mkdir(join(this.#stateDir, 'gateway-api'), { recursive: true, mode: 0o700 });
    for (const c of t.certificates) {
      for (const [part, pem] of [
        ['crt', c.cert],
        ['key', c.key],
      ] as const) {
        const file = settings.certificateFile(c, part);
        const current = await readFile(file, 'utf8').catch(() => undefined);
        if (current !== pem) await writeFileAtomic(file, pem);
      }
    }
  }

  async #writeStatuses(t: Translation, running: Running): Promise<void> {
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const controller = running.settings.controllerName;
    const writes: Array<Promise<void>> = [];
    for (const [name, conditions] of t.status.gatewayClasses) {
      writes.push(
        this.#writeStatus(running, 'gatewayClasses', undefined, name, (s) =>
          gatewayClassStatus(s as never, conditions, now),
        ),
      );
    }
    for (const [key, wanted] of t.status.gateways) {
      const [ns, name] = key.split('/');
      writes.push(this.#writeStatus(running, 'gateways', ns, name, (s) => gatewayStatus(s as never, wanted, now)));
    }
    // Routes we own a parent of now, and routes we owned a parent of before (their entries must go).
    for (const route of running.objects.get('httpRoutes')!.values()) {
      const key = `${route.metadata.namespace ?? 'default'}/${route.metadata.name}`;
      const ours = t.status.httpRoutes.get(key) ?? [];
      writes.push(
        this.#writeStatus(running, 'httpRoutes', route.metadata.namespace, route.metadata.name, (s) =>
          routeStatus(s as never, controller, ours, now),
        ),
      );
    }
    await Promise.all(writes);
  }

  /**
   * PUT the status an object should have (the status subresource), with its resourceVersion: on 409
   * Conflict (the object changed meanwhile) read it again and recompute, a few times.
   */
  async #writeStatus(
    running: Running,
    collection: Collection,
    namespace: string | undefined,
    name: string,
    next: (current: unknown) => unknown,
  ): Promise<void> {
    const statusPath = COLLECTIONS[collection].statusPath!(namespace, name);
    let object = running.objects.get(collection)!.get(`${namespace ?? ''}/${name}`);
    for (let attempt = 0; object && attempt <= STATUS_RETRIES; attempt++) {
      const status = next(object.status);
      if (status === undefined) return;
      try {
        const kc = await this.#kc!;
        const response = await kubeRequest(kc, statusPath, { method: 'PUT', body: { ...object, status } });
        const written = JSON.parse(await readBody(response)) as KubeItem;
        // Keep our copy current so the next sync compares with what is stored (the watch brings it too).
        running.objects.get(collection)!.set(`${namespace ?? ''}/${name}`, written);
        return;
      } catch (e) {
        if (!(e instanceof KubeApiError) || e.code !== 409) {
          logger.warn({ collection, namespace, name, err: (e as Error).message }, 'gateway api: status write failed');
          return;
        }
        const kc = await this.#kc!;
        const fresh = await kubeRequest(kc, statusPath.replace(/\/status$/, ''))
          .then(readBody)
          .catch(() => undefined);
        object = fresh ? (JSON.parse(fresh) as KubeItem) : undefined;
      }
    }
  }
}
