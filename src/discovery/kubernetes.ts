import type { Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { V1EndpointConditions, V1EndpointSlice } from '@kubernetes/client-node';
import type { Config, EndpointConfig } from '../config/schema/index.js';
import { EndpointSchema, type KubernetesDiscoverySchema } from '../config/schema/cluster.js';
import { loadKubeConfig, ResourceWatch } from '../common/kube-client.js';
import { formatAddress } from '../common/address.js';
import { systemRng, type Rng } from '../common/clock.js';
import { logger } from '../observability/logger.js';
import { kubernetesWatchErrors } from './metrics.js';
import type { DiscoveryStatus, EndpointSink } from './endpoint-source.js';
import { ClusterLoopSource, DiscoveryRecord, type ClusterLoop } from './cluster-loops.js';

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
 * The loop is common/kube-client.ts's ResourceWatch (the library's KubeConfig for credentials, TLS and
 * token refresh; our own list+watch, which the Gateway API source shares); this module maps slices to
 * endpoints, merges them and hands the set on.
 */
export class KubernetesDiscovery extends ClusterLoopSource<SliceWatch> {
  readonly #sink: EndpointSink;
  readonly #options: SliceWatchOptions;

  constructor(sink: EndpointSink, options: KubernetesDiscoveryOptions = {}) {
    super();
    this.#sink = sink;
    this.#options = {
      debounceMs: 50,
      retryBaseMs: 2000,
      watchSilenceGraceMs: 30_000,
      retryMaxMs: 30_000,
      listTimeoutMs: 30_000,
      rng: systemRng,
      ...options,
    };
  }

  /** Start, stop or restart each cluster's loop so they match `config` (a changed block or kubeconfig restarts). */
  reconcile(config: Config): void {
    const kubeconfig = config.gateway.kubernetes?.kubeconfig;
    // A Kubernetes cluster lives in one region, which slices do not carry (only nodes do): its pods are
    // placed in the gateway's own region, so locality and zone-aware routing compare zones within it.
    const region = config.gateway.locality.region;
    this.reconcileLoops(
      config,
      'kubernetes',
      { kubeconfig, region },
      (name, spec, key) => new SliceWatch(name, spec, { region, kubeconfig }, key, this.#sink, this.#options),
    );
  }
}

/** The list+watch loop of one cluster: a ResourceWatch on the Service's slices, mapped and merged here. */
class SliceWatch implements ClusterLoop {
  readonly key: string;
  readonly #spec: KubernetesDiscoveryConfig;
  readonly #region: string;
  readonly #options: SliceWatchOptions;
  readonly #watch: ResourceWatch<V1EndpointSlice>;
  /** The endpoints of each current slice by slice name, mapped when the slice arrives: an event re-maps one slice, not the Service. */
  readonly #slices = new Map<string, EndpointConfig[]>();
  #debounce: NodeJS.Timeout | undefined;
  #stopped = false;
  /** The first list, with its endpoints applied (see KubernetesDiscovery.initialized). */
  readonly first: Promise<void>;
  readonly #record: DiscoveryRecord;

  /** `where`: the cluster's region (the gateway's) and the kubeconfig to reach its API server with. */
  constructor(
    cluster: string,
    spec: KubernetesDiscoveryConfig,
    where: { region: string; kubeconfig: string | undefined },
    key: string,
    sink: EndpointSink,
    options: SliceWatchOptions,
  ) {
    this.key = key;
    this.#spec = spec;
    this.#region = where.region;
    this.#options = options;
    this.#record = new DiscoveryRecord(cluster, 'kubernetes', sink, () => kubernetesWatchErrors.inc({ cluster }));
    const path = `/apis/discovery.k8s.io/v1/namespaces/${spec.namespace}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${spec.service}`)}`;
    this.#watch = new ResourceWatch<V1EndpointSlice>(
      () => loadKubeConfig(where.kubeconfig),
      path,
      {
        listed: (items) => this.#listed(items),
        changed: (type, slice) => this.#changed(type, slice),
        succeeded: () => this.#record.succeeded(),
        failed: (e) => this.#record.failed(e.message || String(e)),
        expired: (resourceVersion) =>
          logger.info(
            { cluster, resourceVersion },
            'kubernetes discovery: resourceVersion expired (410); listing again',
          ),
      },
      options,
    );
    this.first = this.#watch.first;
  }

  status(): DiscoveryStatus {
    return this.#record.status(`${this.#spec.namespace}/${this.#spec.service}:${this.#spec.port}`);
  }

  stop(): void {
    this.#stopped = true;
    this.#watch.stop();
    clearTimeout(this.#debounce);
    this.#record.stop();
  }

  /** A list replaced the slices: the set is handed at once (a pending merge of earlier events is superseded). */
  #listed(items: V1EndpointSlice[]): Promise<void> {
    this.#slices.clear();
    for (const slice of items)
      this.#slices.set(slice.metadata?.name ?? '', endpointsOfSlice(slice, this.#spec, this.#region));
    clearTimeout(this.#debounce);
    this.#debounce = undefined;
    return this.#publish();
  }

  #changed(type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK', slice: V1EndpointSlice): void {
    if (type === 'BOOKMARK') return;
    const name = slice.metadata?.name ?? '';
    if (type === 'DELETED') this.#slices.delete(name);
    else this.#slices.set(name, endpointsOfSlice(slice, this.#spec, this.#region));
    this.#debounce ??= setTimeout(() => {
      this.#debounce = undefined;
      void this.#publish();
    }, this.#options.debounceMs);
  }

  /** Hand the merged set of the current slices (when it differs from the last one handed). */
  #publish(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    const endpoints = mergeSlices(this.#slices.values());
    // A watch may bring no new event for hours: a refused set is offered again after a pause.
    return this.#record.hand(endpoints, JSON.stringify(endpoints), () => {
      this.#debounce ??= setTimeout(() => {
        this.#debounce = undefined;
        void this.#publish();
      }, this.#watch.retryDelay(1));
    });
  }
}

type SliceWatchOptions = Required<Omit<KubernetesDiscoveryOptions, 'watchTimeoutSeconds'>> &
  Pick<KubernetesDiscoveryOptions, 'watchTimeoutSeconds'>;

/**
 * The endpoints of one slice for the cluster's port: none for an FQDN slice or one without the port
 * (TCP); else each address of each ready endpoint (healthy) or serving-and-terminating one (draining).
 */
export function endpointsOfSlice(
  slice: V1EndpointSlice,
  spec: KubernetesDiscoveryConfig,
  region = '',
): EndpointConfig[] {
  if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') return [];
  const port = slice.ports?.find(
    (p) =>
      (typeof spec.port === 'number' ? p.port === spec.port : p.name === spec.port) && (p.protocol ?? 'TCP') === 'TCP',
  )?.port;
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
      const address = formatAddress(ip, port);
      const defined = {
        address,
        locality: { region: endpoint.zone ? region : '', zone: endpoint.zone ?? '' },
        labels,
        ...(health === 'draining' ? { health } : {}),
      };
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
    if (
      k === 'kubernetes.io/service-name' ||
      k === 'service.kubernetes.io/headless' ||
      k.startsWith('endpointslice.kubernetes.io/')
    )
      continue;
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
