import { readFileSync } from 'node:fs';
import { ApiError } from '../api-error.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config, ListenerConfig } from '../../config/schema/index.js';
import type { ConfigError } from '../../config/validate.js';
import { adminFlags, HostFlag, hostHealth } from '../../cluster/host.js';
import type { HealthOverlay } from '../../cluster/cluster-manager.js';
import { summarizeTraffic } from '../../observability/fleet-summary.js';
import { LATENCY_BUCKETS } from '../../observability/request-metrics.js';
import type { Rng } from '../../common/clock.js';
import { msOf } from '../../config/duration.js';
import { logger } from '../../observability/logger.js';
import type { Primary } from '../../process/primary.js';
import type { ConfigChanges } from '../config-service.js';

import { removeStaleTempFiles, writeFileAtomic } from '../store/config-store.js';
import {
  MANAGED_KINDS,
  VD_PREFIX,
  type FleetSummary,
  type GatewayReport,
  type ManagedKind,
  type ManagedResources,
  type Snapshot,
  type SnapshotTrust,
} from '../../hub/protocol.js';
import { HubClient } from './hub-client.js';
import type { GatewaySvid } from './gateway-svid.js';
import type { HubConnectionOptions } from './hub-connection.js';
import { eastWestSvidTls } from './svid-tls.js';

type ManagementServer = NonNullable<Config['managementServer']>;
type Named = { name: string };

interface AppliedState {
  version: number;
  hash: string;
  resources: ManagedResources;
  /** From a hub with a mesh CA: the bundle, the signing root and the revoked gateways. */
  trust?: SnapshotTrust;
}

/**
 * A gateway that follows a management server. Managed resources are merged into the local config
 * (local listeners, gateway settings and local resources stay the operator's), applied through the
 * same validated, persisted, acked path as an admin change, and refused to local writers. The last
 * applied snapshot is persisted beside the config state: after a restart the gateway serves it
 * without the hub (static stability) and only re-applies when the hub sends different content.
 */
export class ManagedGateway {
  readonly client: HubClient;
  readonly #primary: Primary;
  readonly #changes: ConfigChanges;
  readonly #file: string;
  readonly #ms: ManagementServer;
  /** With managementServer.svid: the SVID east-west clusters present (instead of eastWest.tls files). */
  #svid: GatewaySvid | undefined;
  #applied?: AppliedState;
  /** With managementServer.svid: puts a snapshot's trust to use before the snapshot is applied and acked. */
  onTrust: ((trust: SnapshotTrust) => Promise<void>) | undefined;

  constructor(
    primary: Primary,
    changes: ConfigChanges,
    stateDir: string,
    ms: ManagementServer,
    rng: Rng,
    svid?: GatewaySvid,
  ) {
    this.#primary = primary;
    this.#changes = changes;
    this.#ms = ms;
    this.#svid = svid;
    this.#file = join(stateDir, 'managed.json');
    this.client = new HubClient(
      { ...hubConnectionOptions(ms, primary.current.config.gateway.name), reportIntervalMs: msOf(ms).reportInterval },
      { report: () => this.report(), summary: () => this.summary(), apply: (s) => this.apply(s) },
      rng,
    );
  }

  /** Load the last applied snapshot, after removing temp files a killed write left (managed.json stays the truth). */
  async load(): Promise<void> {
    await removeStaleTempFiles(this.#file);
    try {
      this.#applied = JSON.parse(await readFile(this.#file, 'utf8')) as AppliedState;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  get applied(): { version: number; hash: string } | undefined {
    return this.#applied && { version: this.#applied.version, hash: this.#applied.hash };
  }

  /** Admin write guard: managed resources (and whole-document writes) belong to the hub. */
  guard(kind: string, name: string | undefined): string | undefined {
    if (kind === 'config')
      return `this gateway is managed by ${this.#ms.url}: whole-config writes are refused; change local resources one by one, managed ones at the management server`;
    if (name && this.#isManaged(kind, name))
      return `${kind.slice(0, -1)} "${name}" is managed by ${this.#ms.url}; change it there`;
    return undefined;
  }

  /** Validate and apply a snapshot; returns the errors when it is rejected (nothing applied). */
  async apply(snapshot: Snapshot): Promise<ConfigError[] | undefined> {
    const previous = this.#applied;
    if (previous?.hash === snapshot.hash && previous.version === snapshot.version) return undefined;
    if (snapshot.trust && this.onTrust) {
      try {
        await this.onTrust(snapshot.trust);
      } catch (e) {
        return [{ path: 'trust', message: `cannot use the trust bundle: ${(e as Error).message}` }];
      }
    }
    // Set first: health changes triggered by the apply itself report (and guard) the new managed set.
    this.#applied = {
      version: snapshot.version,
      hash: snapshot.hash,
      resources: snapshot.resources,
      trust: snapshot.trust,
    };
    try {
      await this.#changes.change(
        'hub',
        `apply snapshot ${snapshot.version}/${snapshot.hash}`,
        undefined,
        (draft) =>
          this.#merge(draft as unknown as Record<string, Named[]>, previous, snapshot.resources) as unknown as Config,
        `hub:${snapshot.version}`,
      );
    } catch (e) {
      this.#applied = previous;
      if (e instanceof ApiError)
        return (e.body as { errors?: ConfigError[] }).errors ?? [{ path: '(apply)', message: e.message }];
      throw e;
    }
    await this.#persist();
    logger.info({ version: snapshot.version, hash: snapshot.hash }, 'applied management server snapshot');
    return undefined;
  }

  /** The SVID east-west clusters present from the next config change on (a new bundle: see SvidRenewer.applyTrust). */
  useSvid(svid: GatewaySvid): void {
    this.#svid = svid;
  }

  /**
   * A renewed SVID: east-west clusters present it from now on. Their TLS names the SVID's serial-named
   * files, so the change makes new upstream pools; the old ones finish their requests and close.
   */
  async renewedSvid(svid: GatewaySvid): Promise<void> {
    this.#svid = svid;
    if (!this.#applied) return;
    await this.#changes.change(
      'svid',
      `use SVID ${svid.serial}`,
      undefined,
      (draft) => this.withManaged(draft),
      `svid:${svid.serial}`,
    );
  }

  /** A locally loaded config (SIGHUP) with the managed resources laid over it again. */
  withManaged(config: Config): Config {
    const draft = structuredClone(config) as unknown as Record<string, Named[]>;
    return (this.#applied ? this.#merge(draft, this.#applied, this.#applied.resources) : draft) as unknown as Config;
  }

  report(): GatewayReport {
    // What the workers run: static endpoints and those discovery sources found (DNS, Kubernetes) alike.
    const config = this.#primary.live;
    const overlay = this.#primary.overlay;
    const instances: GatewayReport['instances'] = [];
    for (const c of config.clusters) {
      if (c.kind === 'aggregate' || this.#isManaged('clusters', c.name)) continue;
      for (const e of c.endpoints) {
        const flags = adminFlags(e.health) | (overlay[c.name]?.[e.address] ?? 0);
        instances.push({
          cluster: c.name,
          address: e.address,
          labels: { ...e.labels },
          healthy: hostHealth(flags) !== 'unhealthy',
        });
      }
    }
    const { locality, labels } = config.gateway;
    return { labels: { ...labels }, locality: { ...locality }, eastWestAddress: this.#ms.eastWest?.address, instances };
  }

  /**
   * The traffic summary sent with each report (the hub's GET /fleet/metrics): read from the metrics
   * the workers already keep, aggregated as the admin /metrics does, so nothing runs on the request path.
   */
  async summary(): Promise<FleetSummary> {
    const metrics = await (await this.#primary.metrics()).getMetricsAsJSON();
    const { routes, clusters } = summarizeTraffic(metrics, LATENCY_BUCKETS, ejectedByCluster(this.#primary.overlay));
    return {
      intervalSeconds: msOf(this.#ms).reportInterval / 1000,
      bounds: [...LATENCY_BUCKETS],
      routes,
      clusters,
      ...(this.#applied && { snapshotVersion: this.#applied.version }),
      ...(this.#svid && { svidExpiry: Math.floor(this.#svid.expiresAt.getTime() / 1000) }),
    };
  }

  #isManaged(kind: string, name: string): boolean {
    return (
      !!this.#applied &&
      (MANAGED_KINDS as readonly string[]).includes(kind) &&
      this.#applied.resources[kind as ManagedKind].some((r) => r.name === name)
    );
  }

  /** Drop the previous managed resources from a draft, then add the snapshot's (hub wins on a name clash). */
  #merge(
    draft: Record<string, Named[]>,
    previous: AppliedState | undefined,
    resources: ManagedResources,
  ): Record<string, Named[]> {
    for (const kind of MANAGED_KINDS) {
      const incoming = kind === 'clusters' ? resources.clusters.map((c) => this.#eastWestTls(c)) : resources[kind];
      const replaced = new Set([...(previous?.resources[kind] ?? []), ...incoming].map((r) => r.name));
      draft[kind] = [...(draft[kind] ?? []).filter((r) => !replaced.has(r.name)), ...incoming];
    }
    draft.listeners = withRevocations(draft.listeners as ListenerConfig[], this.#applied?.trust?.revokedGateways);
    return draft;
  }

  /** Clusters that reach other gateways' east-west listeners use this gateway's own credentials. */
  #eastWestTls(cluster: ManagedResources['clusters'][number]) {
    const tls = cluster.upstreamTls as Record<string, unknown> | undefined;
    if (!tls || !cluster.name.startsWith(VD_PREFIX)) return cluster;
    if (this.#svid) return eastWestSvidTls(cluster, this.#svid);
    return { ...cluster, upstreamTls: { ...this.#ms.eastWest?.tls, ...tls } };
  }

  #persist(): Promise<void> {
    return writeFileAtomic(this.#file, JSON.stringify(this.#applied));
  }
}

/** SVID listeners refuse the gateways the hub revoked (set in place: see ListenerSet); others are as written. */
function withRevocations(listeners: ListenerConfig[] = [], revoked: string[] = []): ListenerConfig[] {
  return listeners.map((l) => {
    if (!l.tls?.svid) return l;
    const { revokedGateways: _old, ...tls } = l.tls;
    return { ...l, tls: revoked.length ? { ...tls, revokedGateways: revoked } : tls };
  });
}

/** How this gateway reaches its hub: url, fleet id (default gateway.name), token and client TLS files. */
export function hubConnectionOptions(ms: ManagementServer, gatewayName: string): HubConnectionOptions {
  const tls = ms.tls && { ca: read(ms.tls.ca), cert: read(ms.tls.cert), key: read(ms.tls.key) };
  return { url: ms.url, failoverUrls: ms.failoverUrls, id: ms.id ?? gatewayName, token: ms.token, tls };
}

/** Endpoints outlier detection holds ejected now, by cluster (clusters with none left out). */
function ejectedByCluster(overlay: HealthOverlay): Map<string, number> {
  const out = new Map<string, number>();
  for (const [cluster, hosts] of Object.entries(overlay)) {
    let n = 0;
    for (const flags of Object.values(hosts)) if (flags & HostFlag.FAILED_OUTLIER_CHECK) n++;
    if (n > 0) out.set(cluster, n);
  }
  return out;
}

function read(file: string | undefined): Buffer | undefined {
  return file ? readFileSync(file) : undefined;
}
