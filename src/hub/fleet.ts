import type { ServerResponse } from 'node:http';
import type { HubConfig } from './config.js';
import { isStale, type FleetEntry } from './fleet-metrics.js';
import type { Ack, FleetSummary, GatewayReport, Snapshot, SnapshotTrust } from './protocol.js';
import { buildSnapshot } from './snapshot.js';
import { failoverPaths, type FleetMember } from './virtual-destinations.js';
import { withFleetOriginShares } from './zone-shares.js';

const HEARTBEAT_MS = 15000;

interface Gateway {
  id: string;
  report: GatewayReport;
  /** Who authenticated the last report: SPIFFE ID or token name. */
  identity: string;
  /** Open watches by replica: replicas of one gateway share its id and all receive the same snapshot. */
  watches: Map<ServerResponse, string>;
  lastSent?: { version: number; hash: string; at: string };
  lastAck?: { version: number; hash: string; at: string };
  /** The last ack of each connected replica (by the id its hub client sends), ok or not. */
  replicaAcks: Map<string, { version: number; hash: string; at: string; ok: boolean }>;
  lastRejected?: { version: number; hash: string; at: string; errors: Ack['errors'] };
  lastSeen: string;
  /**
   * The last traffic summary of each replica (by REPLICA_HEADER) and when it arrived (Date.now()):
   * replicas count apart, so one replica's restart is a counter reset of its own series only.
   */
  summaries: Map<string, { summary: FleetSummary; receivedAt: number }>;
}

/** The SVID the hub last signed for a gateway id (kept in memory: a restarted hub knows none). */
export interface IssuedSvidRecord {
  spiffeId: string;
  expiresAt: string;
  issuedAt: string;
  /** SHA-256 fingerprint of the root that signed it (a CA rotation retires a root once none is left). */
  issuer: string;
}

/** The CA's part of every snapshot's trust: the bundle and the signing root's fingerprint. */
export type CaTrust = () => Omit<SnapshotTrust, 'revokedGateways'>;

/**
 * The hub's view of its gateways: their reports, their open watches and what each acknowledged.
 * Whenever the fleet document or any report changes, every connected gateway's snapshot is rebuilt
 * and sent if its content changed (virtual destinations depend on other gateways' reports).
 */
export class Fleet {
  readonly #gateways = new Map<string, Gateway>();
  /** By gateway id, apart from #gateways: a gateway may ask for its SVID before its first report. */
  readonly #svids = new Map<string, IssuedSvidRecord>();
  readonly #heartbeat: NodeJS.Timeout;
  #config: HubConfig;
  #version: number;
  #revoked: ReadonlySet<string> = new Set();
  /** With a mesh CA: what every snapshot carries for gateways to trust (see SnapshotTrust). */
  #caTrust: CaTrust | undefined;
  /**
   * Registrations other hub replicas hold (etcd-replication.ts): gateways that report elsewhere are
   * members here too, so virtual destinations and fleet-wide data see the whole fleet.
   */
  readonly #remote = new Map<string, GatewayReport>();
  /** Called with each report a gateway sends this replica (replicas share them through etcd). */
  onRegistered?: (id: string, report: GatewayReport) => void;
  /** Observers of acks (benchmarks and tests measure propagation with it). */
  onAck?: (id: string, ack: Ack) => void;

  constructor(config: HubConfig, version: number, caTrust?: CaTrust) {
    this.#config = config;
    this.#version = version;
    this.#caTrust = caTrust;
    this.#revoked = revokedOf(config);
    this.#heartbeat = setInterval(() => this.#ping(), HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  setConfig(config: HubConfig, version: number): void {
    this.#config = config;
    this.#version = version;
    this.#revoked = revokedOf(config);
    // A revoked gateway's watches close: it learns nothing more, and its reconnects are refused.
    for (const id of this.#revoked) for (const w of this.#gateways.get(id)?.watches.keys() ?? []) w.destroy();
    this.#pushAll();
  }

  /** The CA's trust changed (a rotation step): every connected gateway gets it in a new snapshot. */
  trustChanged(): void {
    this.#pushAll();
  }

  isRevoked(id: string): boolean {
    return this.#revoked.has(id);
  }

  /** Connected gateways that have not acknowledged the last snapshot sent (a rotation waits for them). */
  notInSync(): string[] {
    return [...this.#gateways.values()].filter((g) => g.watches.size > 0 && !inSync(g)).map((g) => g.id);
  }

  /** Gateways whose last SVID (as far as this hub process knows) was signed by `issuer` and is unexpired. */
  holdingSvidsOf(issuer: string, now = Date.now()): string[] {
    return [...this.#svids].filter(([, s]) => s.issuer === issuer && Date.parse(s.expiresAt) > now).map(([id]) => id);
  }

  /** A report from `replica` of gateway `id`; its summary, if any, is kept apart from the report. */
  report(id: string, { summary, ...report }: GatewayReport, identity: string, replica = ''): void {
    let g = this.#gateways.get(id);
    const now = new Date().toISOString();
    const changed = !g || JSON.stringify(g.report) !== JSON.stringify(report);
    if (g) Object.assign(g, { report, identity, lastSeen: now });
    else {
      g = { id, report, identity, watches: new Map(), replicaAcks: new Map(), lastSeen: now, summaries: new Map() };
      this.#gateways.set(id, g);
    }
    if (summary) g.summaries.set(replica, { summary, receivedAt: Date.now() });
    if (changed) this.onRegistered?.(id, report);
    this.#pushAll();
  }

  /** Share every gateway connected here again (this replica's registrations were lost with its lease). */
  registerAgain(): void {
    for (const g of this.#gateways.values()) if (g.watches.size) this.onRegistered?.(g.id, g.report);
  }

  /** A registration another replica shared (or this one's own, coming back): a member unless it reports here. */
  remoteReport(id: string, report: GatewayReport): void {
    if (JSON.stringify(this.#remote.get(id)) === JSON.stringify(report)) return;
    this.#remote.set(id, report);
    if (!this.#gateways.get(id)?.watches.size) this.#pushAll();
  }

  /** A registration that ended elsewhere (its replica's lease ran out). */
  remoteGone(id: string): void {
    if (this.#remote.delete(id)) this.#pushAll();
  }

  /** GET /fleet/metrics: each gateway replica's last traffic summary; stale ones at `now` are forgotten. */
  metrics(now = Date.now()): FleetEntry[] {
    const out: FleetEntry[] = [];
    for (const g of this.#gateways.values())
      for (const [replica, s] of g.summaries) {
        if (isStale(s, now)) g.summaries.delete(replica);
        else out.push({ gateway: g.id, replica, locality: g.report.locality, ...s });
      }
    return out;
  }

  has(id: string): boolean {
    return this.#gateways.has(id);
  }

  /** Hold a server-sent-events stream open for a gateway and send it its snapshot at once. */
  watch(id: string, res: ServerResponse, replica: string): void {
    const g = this.#gateways.get(id)!;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    res.flushHeaders();
    // A gateway that watches here now registers here (its registration moves to this replica's lease).
    if (g.watches.size === 0) this.onRegistered?.(id, g.report);
    g.watches.set(res, replica);
    res.on('close', () => {
      g.watches.delete(res);
      if (![...g.watches.values()].includes(replica)) g.replicaAcks.delete(replica);
    });
    this.#send(g, this.#snapshotFor(g), [res]);
  }

  ack(id: string, ack: Ack, replica: string): void {
    const g = this.#gateways.get(id);
    if (!g) return;
    const entry = { version: ack.version, hash: ack.hash, at: new Date().toISOString() };
    if (ack.ok) g.lastAck = entry;
    else g.lastRejected = { ...entry, errors: ack.errors ?? [] };
    if (replica && [...g.watches.values()].includes(replica)) g.replicaAcks.set(replica, { ...entry, ok: ack.ok });
    this.onAck?.(id, ack);
  }

  /** GET /fleet */
  list() {
    return [...this.#gateways.values()].map((g) => ({
      id: g.id,
      identity: g.identity,
      labels: g.report.labels,
      locality: g.report.locality,
      eastWestAddress: g.report.eastWestAddress,
      connected: g.watches.size > 0,
      replicas: g.watches.size,
      instances: g.report.instances.length,
      lastSeen: g.lastSeen,
      lastSent: g.lastSent,
      lastAck: g.lastAck,
      lastRejected: g.lastRejected,
      replicaAcks: [...new Set(g.watches.values())]
        .filter((r) => r)
        .map((replica) => ({ replica, lastAck: g.replicaAcks.get(replica) })),
      inSync: inSync(g),
      svid: this.#svids.get(g.id),
    }));
  }

  recordSvid(id: string, svid: { spiffeId: string; expiresAt: string; issuer: string }): void {
    const { spiffeId, expiresAt, issuer } = svid;
    this.#svids.set(id, { spiffeId, expiresAt, issuedAt: new Date().toISOString(), issuer });
  }

  /** GET /fleet/virtual-destinations: each one's failover paths from the fleet's current reports. */
  virtualDestinations() {
    const fleet = this.#members();
    return this.#config.virtualDestinations.map((vd) => ({
      name: vd.name,
      host: vd.host,
      port: vd.port,
      selector: vd.selector,
      targets: vd.targets,
      failover: vd.failover.order ? { order: vd.failover.order } : { byLocality: true },
      paths: failoverPaths(vd, fleet),
    }));
  }

  close(): void {
    clearInterval(this.#heartbeat);
    for (const g of this.#gateways.values()) for (const w of g.watches.keys()) w.destroy();
  }

  /**
   * The gateways virtual destinations route to, and the origins zone shares count: every registered
   * one that is not revoked.
   */
  #members(): FleetMember[] {
    const members = new Map<string, FleetMember>();
    // A gateway connected here reports here; any other is as its replica last shared it.
    for (const [id, report] of this.#remote) members.set(id, { id, report });
    for (const g of this.#gateways.values())
      if (g.watches.size || !members.has(g.id)) members.set(g.id, { id: g.id, report: g.report });
    return [...members.values()].filter((m) => !this.#revoked.has(m.id)).sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /**
   * `config` is the fleet document with the zone shares the fleet gives it: a report that adds a
   * gateway to a zone (or moves one) changes the snapshot of every gateway those shares go to.
   */
  #snapshotFor(g: Gateway, fleet = this.#members(), config = withFleetOriginShares(this.#config, fleet)): Snapshot {
    const ca = this.#caTrust?.();
    const trust = ca && { ...ca, revokedGateways: [...this.#revoked].sort() };
    return buildSnapshot(config, this.#version, g, fleet, trust);
  }

  #pushAll(): void {
    const fleet = this.#members();
    const config = withFleetOriginShares(this.#config, fleet);
    for (const g of this.#gateways.values()) {
      if (g.watches.size === 0) continue;
      const snap = this.#snapshotFor(g, fleet, config);
      if (g.lastSent?.hash === snap.hash && g.lastSent.version === snap.version) continue;
      this.#send(g, snap, [...g.watches.keys()]);
    }
  }

  #send(g: Gateway, snap: Snapshot, to: ServerResponse[]): void {
    const frame = `event: snapshot\ndata: ${JSON.stringify(snap)}\n\n`;
    for (const res of to) res.write(frame);
    g.lastSent = { version: snap.version, hash: snap.hash, at: new Date().toISOString() };
  }

  #ping(): void {
    for (const g of this.#gateways.values()) for (const w of g.watches.keys()) w.write(': ping\n\n');
  }
}

function revokedOf(config: HubConfig): ReadonlySet<string> {
  return new Set(config.revokedGateways.map((r) => r.name));
}

/**
 * In sync: the last snapshot sent was acknowledged, by every connected replica that names itself
 * (a replica behind or rejecting makes its gateway out of sync), else by the gateway's last ack.
 */
function inSync(g: Gateway): boolean {
  if (!g.lastSent) return false;
  const sent = g.lastSent.hash;
  const named = [...new Set(g.watches.values())].filter((r) => r);
  if (named.length === 0) return g.lastAck?.hash === sent;
  return named.every((r) => {
    const a = g.replicaAcks.get(r);
    return a?.ok === true && a.hash === sent;
  });
}
