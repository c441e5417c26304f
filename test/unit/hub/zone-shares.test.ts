import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { validateHubConfig, type HubConfig } from '../../../src/hub/config.js';
import { Fleet } from '../../../src/hub/fleet.js';
import type { GatewayReport, Snapshot } from '../../../src/hub/protocol.js';
import { buildSnapshot } from '../../../src/hub/snapshot.js';
import type { FleetMember } from '../../../src/hub/virtual-destinations.js';
import { fleetOriginShares, withFleetOriginShares } from '../../../src/hub/zone-shares.js';
import { validateConfig } from '../../../src/config/validate.js';
import { zoneAwareSplit } from '../../../src/lb/locality.js';

function report(zone: string, labels: Record<string, string> = {}): GatewayReport {
  return { labels, locality: { region: 'r', zone, subzone: '' }, instances: [] };
}
const member = (id: string, zone: string, labels: Record<string, string> = {}): FleetMember => ({
  id,
  report: report(zone, labels),
});

function hub(doc: Record<string, unknown>): HubConfig {
  const v = validateHubConfig(doc);
  if (!v.ok) throw new Error(JSON.stringify(v.errors));
  return v.config;
}

const endpoints = [
  { address: '127.0.0.1:1001', locality: { zone: 'zone-a' } },
  { address: '127.0.0.1:1002', locality: { zone: 'zone-b' } },
  { address: '127.0.0.1:1003', locality: { zone: 'zone-b' } },
  { address: '127.0.0.1:1004', locality: { zone: 'zone-c' } },
];
const zoned = (extra: Record<string, unknown> = {}) => ({
  name: 'app',
  endpoints,
  lb: { zoneAware: { enabled: true, minClusterSize: 2 } },
  ...extra,
});
const clusterOf = (snap: Snapshot, name: string) => snap.resources.clusters.find((c) => c.name === name) as any;

describe('fleetOriginShares', () => {
  const fleet = [
    member('g1', 'zone-b', { tier: 'edge' }),
    member('g2', 'zone-a', { tier: 'edge' }),
    member('g3', 'zone-a', { tier: 'edge' }),
    member('g4', 'zone-c', { tier: 'internal' }),
    member('g5', '', { tier: 'edge' }),
  ];

  it('counts the gateways per zone, in sorted zone order, leaving out gateways without a zone', () => {
    const shares = fleetOriginShares({}, fleet);
    expect(shares).toEqual({ 'zone-a': 2, 'zone-b': 1, 'zone-c': 1 });
    expect(Object.keys(shares!)).toEqual(['zone-a', 'zone-b', 'zone-c']);
  });

  it("counts only the gateways the cluster's targets select", () => {
    expect(fleetOriginShares({ targets: { tier: 'edge' } }, fleet)).toEqual({ 'zone-a': 2, 'zone-b': 1 });
    expect(fleetOriginShares({ targets: { tier: 'none' } }, fleet)).toBeUndefined();
    expect(fleetOriginShares({}, [member('g5', '')])).toBeUndefined();
  });
});

describe('withFleetOriginShares', () => {
  const fleet = [member('g1', 'zone-a'), member('g2', 'zone-a'), member('g3', 'zone-b'), member('g4', 'zone-c')];

  it('fills the shares of zone-aware clusters that do not write them, and keeps written ones', () => {
    const config = hub({
      clusters: [
        zoned(),
        zoned({ name: 'written', lb: { zoneAware: { enabled: true, originShares: { 'zone-b': 1 } } } }),
        zoned({ name: 'off', lb: { zoneAware: { enabled: false } } }),
        { name: 'plain', endpoints },
      ],
    });
    const derived = withFleetOriginShares(config, fleet);
    const byName = Object.fromEntries(derived.clusters.map((c) => [c.name, c as any]));
    expect(byName.app.lb.zoneAware).toEqual({
      enabled: true,
      minClusterSize: 2,
      originShares: { 'zone-a': 2, 'zone-b': 1, 'zone-c': 1 },
    });
    expect(byName.written.lb.zoneAware.originShares).toEqual({ 'zone-b': 1 });
    expect(byName.off.lb.zoneAware.originShares).toBeUndefined();
    expect(byName.plain.lb).toBeUndefined();
    // The hub's own document is left as written (it is frozen, and GET /config shows what was written).
    expect((config.clusters[0] as any).lb.zoneAware.originShares).toBeUndefined();
  });

  it('returns the document itself when no cluster derives shares', () => {
    const config = hub({ clusters: [{ name: 'plain', endpoints }] });
    expect(withFleetOriginShares(config, fleet)).toBe(config);
  });

  it('gives the same snapshot hash whatever order the gateways registered in', () => {
    const config = hub({ clusters: [zoned()] });
    const hashFrom = (members: FleetMember[]) =>
      buildSnapshot(withFleetOriginShares(config, members), 1, members[0], members).hash;
    const reversed = [...fleet].reverse();
    expect(hashFrom([fleet[0], ...reversed.filter((m) => m !== fleet[0])])).toBe(hashFrom(fleet));
  });

  it('makes a cluster a gateway accepts, and zone-aware routing then splits as Envoy would', () => {
    const snap = buildSnapshot(withFleetOriginShares(hub({ clusters: [zoned()] }), fleet), 1, fleet[0], fleet);
    const v = validateConfig({ clusters: snap.resources.clusters });
    expect(v.ok, JSON.stringify(!v.ok && v.errors)).toBe(true);
    const lb = v.ok ? (v.config.clusters[0]!.lb as any) : undefined;
    // Origin 50/25/25 %, upstream 25/50/25 %: zone-a keeps 25/50 local, the rest to zone-b's residual.
    const split = zoneAwareSplit(
      new Map([
        ['zone-a', 1],
        ['zone-b', 2],
        ['zone-c', 1],
      ]),
      'zone-a',
      lb,
    );
    expect(split).toEqual({
      local: 0.5,
      residual: [
        ['zone-b', 0.25],
        ['zone-c', 0],
      ],
    });
  });
});

/** A watch as the Fleet sees it: the snapshots written to it, parsed. */
class FakeWatch extends EventEmitter {
  frames: Snapshot[] = [];
  writeHead() {}
  flushHeaders() {}
  write(chunk: string) {
    const data = /^data: (.*)$/m.exec(chunk);
    if (data) this.frames.push(JSON.parse(data[1]!) as Snapshot);
    return true;
  }
  destroy() {
    this.emit('close');
  }
  get last(): Snapshot {
    return this.frames[this.frames.length - 1]!;
  }
}

describe('Fleet: zone shares from reports', () => {
  let fleet: Fleet | undefined;
  afterEach(() => fleet?.close());

  const watch = (f: Fleet, id: string) => {
    const w = new FakeWatch();
    f.watch(id, w as unknown as ServerResponse, `${id}-replica`);
    return w;
  };
  const sharesOf = (w: FakeWatch) => clusterOf(w.last, 'app').lb.zoneAware.originShares;

  it('counts registered, unrevoked gateways, and pushes new shares when one joins', () => {
    const config = hub({ clusters: [zoned()], revokedGateways: [{ name: 'g-revoked' }] });
    fleet = new Fleet(config, 1);
    fleet.report('g1', report('zone-a'), 't');
    fleet.report('g-revoked', report('zone-c'), 't');
    const w1 = watch(fleet, 'g1');
    expect(sharesOf(w1)).toEqual({ 'zone-a': 1 });
    fleet.report('g2', report('zone-b'), 't');
    expect(w1.frames).toHaveLength(2);
    expect(sharesOf(w1)).toEqual({ 'zone-a': 1, 'zone-b': 1 });
    // The same content reported again changes nothing: no new snapshot.
    fleet.report('g2', report('zone-b'), 't');
    expect(w1.frames).toHaveLength(2);
    // Revoking g2 takes it out of the shares.
    fleet.setConfig(hub({ clusters: [zoned()], revokedGateways: [{ name: 'g-revoked' }, { name: 'g2' }] }), 2);
    expect(sharesOf(w1)).toEqual({ 'zone-a': 1 });
  });

  it('keeps counting a gateway whose watch dropped: no snapshot for the others while it reconnects', () => {
    fleet = new Fleet(hub({ clusters: [zoned()] }), 1);
    fleet.report('g1', report('zone-a'), 't');
    fleet.report('g2', report('zone-b'), 't');
    const w1 = watch(fleet, 'g1');
    const w2 = watch(fleet, 'g2');
    expect(sharesOf(w1)).toEqual({ 'zone-a': 1, 'zone-b': 1 });
    w2.destroy();
    fleet.report('g1', report('zone-a'), 't'); // any report rebuilds every snapshot
    expect(w1.frames).toHaveLength(1);
    // Moving to another zone is a change.
    fleet.report('g2', report('zone-c'), 't');
    expect(sharesOf(w1)).toEqual({ 'zone-a': 1, 'zone-c': 1 });
  });

  it('sends each gateway the shares of the gateways its clusters target, and the written ones as written', () => {
    fleet = new Fleet(
      hub({
        clusters: [
          zoned({ targets: { tier: 'edge' } }),
          zoned({ name: 'written', lb: { zoneAware: { enabled: true, originShares: { x: 1 } } } }),
        ],
      }),
      1,
    );
    fleet.report('e1', report('zone-a', { tier: 'edge' }), 't');
    fleet.report('e2', report('zone-b', { tier: 'edge' }), 't');
    fleet.report('i1', report('zone-c', { tier: 'internal' }), 't');
    const we = watch(fleet, 'e1');
    const wi = watch(fleet, 'i1');
    expect(sharesOf(we)).toEqual({ 'zone-a': 1, 'zone-b': 1 });
    expect(clusterOf(we.last, 'written').lb.zoneAware.originShares).toEqual({ x: 1 });
    expect(clusterOf(wi.last, 'app')).toBeUndefined();
    // An internal gateway joining another zone changes no edge gateway's snapshot.
    fleet.report('i2', report('zone-d', { tier: 'internal' }), 't');
    expect(we.frames).toHaveLength(1);
  });
});
