import http from 'node:http';
import https from 'node:https';
import { existsSync } from 'node:fs';
import type { Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { KubeConfig, V1EndpointConditions, V1EndpointSlice, V1Status } from '@kubernetes/client-node';
import type { Config, EndpointConfig } from '../config/schema/index.js';
import { EndpointSchema, type KubernetesDiscoverySchema } from '../config/schema/cluster.js';
import { backoffDelay } from '../common/backoff.js';
import { systemRng, type Rng } from '../common/clock.js';
import { logger } from '../observability/logger.js';
import { discoveredEndpoints, kubernetesWatchErrors } from './metrics.js';
import type { DiscoveryStatus, EndpointSink } from './endpoint-source.js';
import { ClusterLoopSource, type ClusterLoop } from './cluster-loops.js';

type KubernetesDiscoveryConfig = Static<typeof KubernetesDiscoverySchema>;

/** Tuning of the list+watch loops; the defaults suit production, tests may shorten them. */
export interface KubernetesDiscoveryOptions {
  /** Wait after a watch event before the set is computed, so a burst (a rollout touching many slices) is handed once. */
  debounceMs?: number;
  /** Reconnect backoff after a failure: the n-th retry waits between half and all of min(max, base * 2^(n-1)). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Bound of one list request (a watch is bounded by its timeoutSeconds instead). */
  listTimeoutMs?: number;
  /**
   * The watch's `timeoutSeconds`: the API server ends the watch after it and we resume from the last
   * resourceVersion. A watch still open `watchSilenceGraceMs` past it is taken as a silently dead
   * connection (no FIN ever came) and aborted. Default: a random 300-600 s per watch, as client-go's
   * reflector spreads its watches.
   */
  watchTimeoutSeconds?: number;
  watchSilenceGraceMs?: number;
  rng?: Rng;
}

/** The service-account files a pod gets mounted; present together with KUBERNETES_SERVICE_HOST in a cluster. */
const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';
/** A watch that ends cleanly sooner than this waits a retry delay before the next, so a server that closes at once is not hammered. */
const SHORT_WATCH_MS = 1000;

/**
 * Kubernetes EndpointSlice discovery in the primary: one list+watch per cluster with
 * `discovery.kubernetes`, handing each new endpoint set to the sink. Clusters that watch the same
 * Service each hold their own watch (simple and rare; the API server's watch cache serves them cheaply).
 *
 * Each loop lists the Service's slices (label `kubernetes.io/service-name`), then watches from the
 * list's resourceVersion with bookmarks, resuming from the last seen resourceVersion when a watch ends
 * or drops. 410 Gone (the version was compacted: a 410 response or an ERROR event with code 410)
 * re-lists. Any other failure keeps the last endpoints, marks the cluster stale and reconnects after a
 * jittered exponential backoff (1-2 s, 2-4 s, ... at most 15-30 s), reset by the next success.
 *
 * The requests are built here on node:http(s) with the library's KubeConfig (credentials, TLS, token
 * refresh): its ListWatch does not ask for bookmarks, gives up on the first error and drops the Status
 * message of a refused request (an RBAC 403 says which permission is missing), which the status shows.
 */
export class KubernetesDiscovery extends ClusterLoopSource<SliceWatch> {
  readonly #sink: EndpointSink;
  readonly #options: SliceWatchOptions;

  constructor(sink: EndpointSink, options: KubernetesDiscoveryOptions = {}) {
    super();
    this.#sink = sink;
    this.#options = { debounceMs: 50, retryBaseMs: 2000, watchSilenceGraceMs: 30_000, retryMaxMs: 30_000, listTimeoutMs: 30_000, rng: systemRng, ...options };
  }

  /** Start, stop or restart each cluster's loop so they match `config` (a changed block or kubeconfig restarts). */
  reconcile(config: Config): void {
    const kubeconfig = config.gateway.kubernetes?.kubeconfig;
    // A Kubernetes cluster lives in one region, which slices do not carry (only nodes do): its pods are
    // placed in the gateway's own region, so locality and zone-aware routing compare zones within it.
    const region = config.gateway.locality.region;
    this.reconcileLoops(config, 'kubernetes', { kubeconfig, region }, (name, spec, key) => new SliceWatch(name, spec, region, kubeconfig, key, this.#sink, this.#options));
  }
}

/** A failed API request; `code` is the HTTP status or the Status object's code when the server gave one. */
class ApiError extends Error {
  constructor(message: string, readonly code?: number) {
    super(message);
  }
}

/** The list+watch loop of one cluster. */
class SliceWatch implements ClusterLoop {
  readonly key: string;
  readonly #cluster: string;
  readonly #spec: KubernetesDiscoveryConfig;
  readonly #region: string;
  readonly #kubeconfigPath: string | undefined;
  readonly #sink: EndpointSink;
  readonly #options: SliceWatchOptions;
  readonly #abort = new AbortController();
  #kubeConfig: KubeConfig | undefined;
  /** The endpoints of each current slice by slice name, mapped when the slice arrives: an event re-maps one slice, not the Service. */
  readonly #slices = new Map<string, EndpointConfig[]>();
  /** Where the next watch resumes; '' means list first. */
  #resourceVersion = '';
  /** 410s in a row for the version a list had just returned (no event since): the second one is a failure, not a compaction. */
  #expiredListVersions = 0;
  #versionFromList = false;
  #debounce: NodeJS.Timeout | undefined;
  #failures = 0;
  #stopped = false;
  /** The first list, with its endpoints applied (see KubernetesDiscovery.initialized). */
  readonly first: Promise<void>;
  #firstEnded!: () => void;
  /** JSON of the set last handed to the sink ('' before the first), to skip handing an equal set. */
  #handedKey = '';
  #handedCount = 0;
  #lastSuccess: string | null = null;
  #lastError: string | null = null;

  constructor(cluster: string, spec: KubernetesDiscoveryConfig, region: string, kubeconfigPath: string | undefined, key: string, sink: EndpointSink, options: SliceWatchOptions) {
    this.key = key;
    this.#cluster = cluster;
    this.#spec = spec;
    this.#region = region;
    this.#kubeconfigPath = kubeconfigPath;
    this.#sink = sink;
    this.#options = options;
    this.first = new Promise((resolve) => (this.#firstEnded = resolve));
    void this.#run();
  }

  status(): DiscoveryStatus {
    return {
      source: 'kubernetes',
      target: `${this.#spec.namespace}/${this.#spec.service}:${this.#spec.port}`,
      endpoints: this.#handedCount,
      lastSuccess: this.#lastSuccess,
      lastError: this.#lastError,
      stale: this.#failures > 0,
    };
  }

  stop(): void {
    this.#stopped = true;
    this.#abort.abort();
    clearTimeout(this.#debounce);
    this.#firstEnded();
    discoveredEndpoints.remove(this.#cluster, 'kubernetes');
  }

  get #path(): string {
    return `/apis/discovery.k8s.io/v1/namespaces/${this.#spec.namespace}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${this.#spec.service}`)}`;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      let watchStarted = Date.now();
      try {
        this.#kubeConfig ??= await loadKubeConfig(this.#kubeconfigPath);
        if (!this.#resourceVersion) {
          await this.#list();
          this.#firstEnded();
          watchStarted = Date.now();
        }
        await this.#watch();
        if (Date.now() - watchStarted < SHORT_WATCH_MS && this.#resourceVersion) await this.#sleep(this.#retryDelay(1));
      } catch (e) {
        if (this.#stopped) return;
        this.#failed(e as Error);
        this.#firstEnded();
        // A list between 410s succeeds and resets #failures: the 410s in a row keep the backoff growing.
        await this.#sleep(this.#retryDelay(Math.max(this.#failures, this.#expiredListVersions - 1)));
      }
    }
  }

  /** List the slices, replace the map and hand the set at once; returns the sink's promise. */
  async #list(): Promise<void> {
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#options.listTimeoutMs)]);
    const response = await this.#request(this.#path, signal);
    const list = JSON.parse(await readBody(response)) as { metadata?: { resourceVersion?: string }; items?: V1EndpointSlice[] | null };
    if (this.#stopped) return;
    this.#slices.clear();
    for (const slice of list.items ?? []) this.#slices.set(slice.metadata?.name ?? '', endpointsOfSlice(slice, this.#spec, this.#region));
    this.#resourceVersion = list.metadata?.resourceVersion ?? '';
    this.#versionFromList = true;
    this.#succeeded();
    // The list supersedes a pending merge of earlier events.
    clearTimeout(this.#debounce);
    this.#debounce = undefined;
    return this.#publish();
  }

  /**
   * Watch from #resourceVersion until the server ends the watch (resolves), it says 410 (clears the
   * version and resolves, so the loop re-lists) or anything fails (rejects).
   */
  async #watch(): Promise<void> {
    const timeoutSeconds = this.#options.watchTimeoutSeconds ?? Math.floor(300 + this.#options.rng.random() * 300);
    const watchAbort = new AbortController();
    const { watchSilenceGraceMs } = this.#options;
    const silence = setTimeout(() => watchAbort.abort(new ApiError(`watch still open ${watchSilenceGraceMs} ms past its timeoutSeconds (${timeoutSeconds}); reconnecting`)), timeoutSeconds * 1000 + watchSilenceGraceMs);
    const signal = AbortSignal.any([this.#abort.signal, watchAbort.signal]);
    const query = `&watch=1&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(this.#resourceVersion)}&timeoutSeconds=${timeoutSeconds}`;
    try {
      let response: http.IncomingMessage;
      try {
        response = await this.#request(this.#path + query, signal);
      } catch (e) {
        if ((e as ApiError).code === 410) return this.#expired();
        throw e;
      }
      this.#succeeded();
      let buffered = '';
      response.setEncoding('utf8');
      for await (const chunk of response as AsyncIterable<string>) {
        buffered += chunk;
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line && this.#event(JSON.parse(line) as WatchEvent) === 'expired') {
            response.destroy();
            return this.#expired();
          }
        }
      }
    } catch (e) {
      throw signal.aborted && signal.reason instanceof ApiError ? signal.reason : e;
    } finally {
      clearTimeout(silence);
    }
  }

  /** Apply one watch event; 'expired' when the server says our resourceVersion is gone. */
  #event(event: WatchEvent): 'expired' | undefined {
    if (event.type === 'ERROR') {
      const status = event.object as V1Status;
      if (status.code === 410) return 'expired';
      throw new ApiError(`watch error ${status.code ?? ''} ${status.reason ?? ''}: ${status.message ?? ''}`.trim(), status.code);
    }
    const slice = event.object as V1EndpointSlice;
    const name = slice.metadata?.name ?? '';
    if (event.type === 'ADDED' || event.type === 'MODIFIED') this.#slices.set(name, endpointsOfSlice(slice, this.#spec, this.#region));
    else if (event.type === 'DELETED') this.#slices.delete(name);
    if (slice.metadata?.resourceVersion) {
      this.#resourceVersion = slice.metadata.resourceVersion;
      this.#versionFromList = false;
      this.#expiredListVersions = 0;
    }
    this.#succeeded();
    if (event.type !== 'BOOKMARK' && !this.#debounce) {
      this.#debounce = setTimeout(() => {
        this.#debounce = undefined;
        void this.#publish();
      }, this.#options.debounceMs);
    }
    return undefined;
  }

  #expired(): void {
    // One 410 for a list's version is a quiet Service outliving the compaction window; twice in a row is a
    // server refusing what it just listed, and listing again at once would spin.
    if (this.#versionFromList && ++this.#expiredListVersions >= 2) {
      this.#resourceVersion = '';
      throw new ApiError(`410 Gone again for resourceVersion ${this.#resourceVersion}, the version a list just returned`, 410);
    }
    logger.info({ cluster: this.#cluster, resourceVersion: this.#resourceVersion }, 'kubernetes discovery: resourceVersion expired (410); listing again');
    this.#resourceVersion = '';
  }

  /** GET `path` on the current cluster's server with the kubeconfig's credentials; rejects unless 200, with the Status message. */
  async #request(path: string, signal: AbortSignal): Promise<http.IncomingMessage> {
    const kc = this.#kubeConfig!;
    const server = kc.getCurrentCluster()?.server;
    if (!server) throw new ApiError('kubeconfig has no current cluster');
    const options: https.RequestOptions = { headers: { Accept: 'application/json' } };
    await kc.applyToHTTPSOptions(options);
    const url = new URL(server.replace(/\/+$/, '') + path);
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const request = (url.protocol === 'https:' ? https : http).request(url, { ...options, method: 'GET', signal }, resolve);
      request.on('error', reject);
      request.end();
    });
    if (response.statusCode === 200) return response;
    const body = await readBody(response).catch(() => '');
    let status: V1Status = {};
    try {
      status = JSON.parse(body) as V1Status;
    } catch {
      // Not a Status object (a proxy's error page): the HTTP status alone says it.
    }
    throw new ApiError(`${response.statusCode} ${status.reason ?? response.statusMessage ?? ''}${status.message ? `: ${status.message}` : ''}`, response.statusCode);
  }

  #succeeded(): void {
    if (this.#failures > 0) logger.info({ cluster: this.#cluster, failures: this.#failures }, 'kubernetes discovery recovered');
    this.#failures = 0;
    this.#lastError = null;
    this.#lastSuccess = new Date().toISOString();
  }

  #failed(error: Error): void {
    const message = error.message || String(error);
    if (this.#failures === 0) logger.warn({ cluster: this.#cluster, error: message, endpoints: this.#handedCount }, 'kubernetes discovery failed; keeping the last endpoints');
    this.#failures++;
    this.#lastError = message;
    kubernetesWatchErrors.inc({ cluster: this.#cluster });
  }

  /** Half to all of min(max, base * 2^(attempt-1)): never a hot retry, always spread. */
  #retryDelay(attempt: number): number {
    const { retryBaseMs, retryMaxMs, rng } = this.#options;
    return Math.min(retryMaxMs, retryBaseMs * 2 ** Math.max(0, attempt - 1)) / 2 + backoffDelay(attempt, retryBaseMs / 2, retryMaxMs / 2, rng);
  }

  /** Wait `ms`, or less if the loop is stopped; the abort listener goes with the wait, as a loop may wait thousands of times. */
  #sleep(ms: number): Promise<void> {
    const signal = this.#abort.signal;
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Hand the merged set of the current slices when it differs from the last one handed. */
  #publish(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    const endpoints = mergeSlices(this.#slices.values());
    const key = JSON.stringify(endpoints);
    if (key === this.#handedKey) return Promise.resolve();
    this.#handedKey = key;
    this.#handedCount = endpoints.length;
    discoveredEndpoints.set({ cluster: this.#cluster, source: 'kubernetes' }, endpoints.length);
    return this.#sink.setEndpoints(this.#cluster, endpoints, 'kubernetes').catch((e: Error) => {
      if (this.#stopped || this.#handedKey !== key) return;
      // Forget the refused set and offer it again after a pause: a watch may bring no new event for hours.
      this.#handedKey = '';
      this.#lastError = `endpoints not applied: ${e.message}`;
      logger.warn({ cluster: this.#cluster, err: e }, 'kubernetes discovery: the endpoint sink refused a set');
      this.#debounce ??= setTimeout(() => {
        this.#debounce = undefined;
        void this.#publish();
      }, this.#retryDelay(1));
    });
  }
}

type SliceWatchOptions = Required<Omit<KubernetesDiscoveryOptions, 'watchTimeoutSeconds'>> & Pick<KubernetesDiscoveryOptions, 'watchTimeoutSeconds'>;

/** One line of a watch stream. */
interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: V1EndpointSlice | V1Status;
}

/**
 * Credentials: the given kubeconfig file; else the pod's service account when running in a cluster
 * (KUBERNETES_SERVICE_HOST and the mounted token); else the library's default ($KUBECONFIG, then ~/.kube/config).
 */
async function loadKubeConfig(path: string | undefined): Promise<KubeConfig> {
  // Loaded on first use: the library takes ~300 ms to import, which a gateway without Kubernetes clusters should not pay.
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else if (process.env.KUBERNETES_SERVICE_HOST && existsSync(SERVICE_ACCOUNT_TOKEN)) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

async function readBody(response: http.IncomingMessage): Promise<string> {
  response.setEncoding('utf8');
  let body = '';
  for await (const chunk of response as AsyncIterable<string>) body += chunk;
  return body;
}

/**
 * The endpoints of one slice for the cluster's port: none for an FQDN slice or one without the port
 * (TCP); else each address of each ready endpoint (healthy) or serving-and-terminating one (draining).
 */
export function endpointsOfSlice(slice: V1EndpointSlice, spec: KubernetesDiscoveryConfig, region = ''): EndpointConfig[] {
  if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') return [];
  const port = slice.ports?.find((p) => (typeof spec.port === 'number' ? p.port === spec.port : p.name === spec.port) && (p.protocol ?? 'TCP') === 'TCP')?.port;
  if (port === undefined || port === null) return [];
  const endpoints: EndpointConfig[] = [];
  const serviceLabels = serviceLabelsOf(slice);
  for (const endpoint of slice.endpoints ?? []) {
    const health = healthOf(endpoint.conditions);
    if (!health) continue;
    const labels: Record<string, string> = { ...serviceLabels, 'kubernetes.io/service-name': spec.service };
    if (endpoint.targetRef?.kind === 'Pod' && endpoint.targetRef.name) labels.pod = endpoint.targetRef.name;
    if (endpoint.nodeName) labels.node = endpoint.nodeName;
    const forZones = endpoint.hints?.forZones?.map((z) => z.name).filter(Boolean);
    if (forZones?.length) labels['meridian.dev/for-zones'] = forZones.join(',');
    for (const ip of endpoint.addresses ?? []) {
      const address = slice.addressType === 'IPv6' ? `[${ip}]:${port}` : `${ip}:${port}`;
      const defined = { address, locality: { region: endpoint.zone ? region : '', zone: endpoint.zone ?? '' }, labels, ...(health === 'draining' ? { health } : {}) };
      endpoints.push(Value.Default(EndpointSchema, defined) as EndpointConfig);
    }
  }
  return endpoints;
}

/**
 * The Service's own labels, as the EndpointSlice controller copies them onto each slice (all but its
 * reserved ones): endpoints carry them, so a hub's virtual destination can select discovered pods by
 * the labels of their Service (`app: web`), as it selects static endpoints by theirs.
 */
function serviceLabelsOf(slice: V1EndpointSlice): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(slice.metadata?.labels ?? {})) {
    if (k === 'kubernetes.io/service-name' || k === 'service.kubernetes.io/headless' || k.startsWith('endpointslice.kubernetes.io/')) continue;
    out[k] = v;
  }
  return out;
}

/** The Service's set: every slice's endpoints, an address in two slices once (a ready copy before a draining one), sorted. */
export function mergeSlices(slices: Iterable<EndpointConfig[]>): EndpointConfig[] {
  const byAddress = new Map<string, EndpointConfig>();
  for (const endpoints of slices) {
    for (const endpoint of endpoints) {
      const existing = byAddress.get(endpoint.address);
      if (!existing || existing.health === 'draining') byAddress.set(endpoint.address, endpoint);
    }
  }
  return [...byAddress.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

/**
 * The API's conditions: `ready` (nil means true) is healthy; not ready but `serving` (nil defers to
 * ready) and `terminating` is draining (in-flight requests finish, no new ones); anything else is left out.
 */
function healthOf(conditions: V1EndpointConditions | undefined): 'healthy' | 'draining' | undefined {
  const ready = conditions?.ready ?? true;
  if (ready) return 'healthy';
  if ((conditions?.serving ?? ready) && conditions?.terminating) return 'draining';
  return undefined;
}
