import { describe, expect, it } from 'vitest';
import { validateHubConfig, type HubConfig } from '../../src/hub/config.js';
import { buildSnapshot } from '../../src/hub/snapshot.js';
import { failoverPaths, type FleetMember } from '../../src/hub/virtual-destinations.js';
import { SseParser } from '../../src/control/managed/sse.js';
import { validateConfig } from '../../src/config/validate.js';

function member(
  id: string,
  region: string,
  zone: string,
  instances: Array<[string, boolean]>,
  extra: Partial<FleetMember['report']> = {},
): FleetMember {
  return {
    id,
    report: {
      labels: { cluster: id, role: 'east-west' },
      locality: { region, zone, subzone: '' },
      eastWestAddress: `10.0.0.${id.charCodeAt(id.length - 1)}:15443`,
      instances: instances.map(([address, healthy]) => ({ cluster: 'app-b', address, labels: { app: 'b' }, healthy })),
      ...extra,
    },
  };
}

function hub(doc: Record<string, unknown>): HubConfig {
  const v = validateHubConfig(doc);
  if (!v.ok) throw new Error(JSON.stringify(v.errors));
  return v.config;
}

const vd = { name: 'app-b', host: 'app-b.mesh.internal', selector: { app: 'b' } };
const a = member('c-a', 'us-east', 'zone-a', [
  ['127.0.0.1:1001', true],
  ['127.0.0.1:1002', true],
]);
const b = member('c-b', 'us-east', 'zone-b', [
  ['127.0.0.1:2001', true],
  ['127.0.0.1:2002', false],
]);
const c = member('c-c', 'eu-west', 'zone-a', [['127.0.0.1:3001', false]]);
const fleet = [a, b, c];

const byName = (list: Array<{ name: string }>) => Object.fromEntries(list.map((r) => [r.name, r as any]));

describe('hub snapshots', () => {
  it('expands a virtual destination into closest-first tiers: local, same region, other region', () => {
    const snap = buildSnapshot(hub({ virtualDestinations: [vd] }), 3, a, fleet);
    const clusters = byName(snap.resources.clusters);
    expect(clusters['vd.app-b'].clusters).toEqual(['vd.app-b.local', 'vd.app-b.tier2', 'vd.app-b.tier3']);
    expect(clusters['vd.app-b.local'].endpoints.map((e: any) => e.address)).toEqual([
      '127.0.0.1:1001',
      '127.0.0.1:1002',
    ]);
    // One healthy instance behind c-b: weight 1; none behind c-c: the east-west endpoint is unhealthy.
    expect(clusters['vd.app-b.tier2'].endpoints).toMatchObject([
      { address: b.report.eastWestAddress, weight: 1, locality: { region: 'us-east', zone: 'zone-b' } },
    ]);
    expect(clusters['vd.app-b.tier2'].endpoints[0].health).toBeUndefined();
    expect(clusters['vd.app-b.tier3'].endpoints[0].health).toBe('unhealthy');
    expect(clusters['vd.app-b.tier3'].upstreamTls).toEqual({ sni: 'app-b.mesh.internal' });
    // The inbound route comes first and only uses local instances: no ping-pong between clusters.
    expect(snap.resources.routes.map((r) => r.name)).toEqual(['vd.app-b.inbound', 'vd.app-b']);
    expect(byName(snap.resources.routes)['vd.app-b.inbound'].cluster).toBe('vd.app-b.local');
    expect(snap.version).toBe(3);
  });

  it('orders tiers by failover.order in active-passive mode', () => {
    const snap = buildSnapshot(
      hub({ virtualDestinations: [{ ...vd, failover: { order: ['c-c', 'c-a', 'c-b'] } }] }),
      1,
      a,
      fleet,
    );
    expect(byName(snap.resources.clusters)['vd.app-b'].clusters).toEqual([
      'vd.app-b.tier0',
      'vd.app-b.local',
      'vd.app-b.tier2',
    ]);
  });

  it('answers 503 from the inbound route of a gateway without local instances', () => {
    const empty = member('c-d', 'us-east', 'zone-a', []);
    const snap = buildSnapshot(hub({ virtualDestinations: [vd] }), 1, empty, [...fleet, empty]);
    const routes = byName(snap.resources.routes);
    expect(routes['vd.app-b.inbound'].directResponse.status).toBe(503);
    expect(byName(snap.resources.clusters)['vd.app-b'].clusters[0]).toBe('vd.app-b.tier1');
  });

  it('sends each gateway exactly the resources that target it', () => {
    const doc = hub({
      clusters: [
        { name: 'edge-only', endpoints: [{ address: '127.0.0.1:1' }], targets: { role: 'edge' } },
        { name: 'all', endpoints: [{ address: '127.0.0.1:2' }] },
      ],
      virtualDestinations: [{ ...vd, targets: { role: 'edge' } }],
    });
    const snap = buildSnapshot(doc, 1, a, fleet);
    expect(snap.resources.clusters.map((r) => r.name)).toEqual(['all']);
    expect(snap.resources.clusters[0]).not.toHaveProperty('targets');
  });

  it('produces configs a gateway accepts once merged', () => {
    const snap = buildSnapshot(
      hub({ virtualDestinations: [{ ...vd, healthCheck: { http: { path: '/' } } }] }),
      1,
      a,
      fleet,
    );
    const v = validateConfig({ listeners: [{ name: 'main', address: '127.0.0.1:0' }], ...snap.resources });
    expect(v.ok ? [] : v.errors).toEqual([]);
  });

  it('changes the hash only when the content changes', () => {
    const doc = hub({ virtualDestinations: [vd] });
    expect(buildSnapshot(doc, 1, a, fleet).hash).toBe(buildSnapshot(doc, 1, a, fleet).hash);
    const bDown = member('c-b', 'us-east', 'zone-b', [
      ['127.0.0.1:2001', false],
      ['127.0.0.1:2002', false],
    ]);
    expect(buildSnapshot(doc, 1, a, [a, bDown, c]).hash).not.toBe(buildSnapshot(doc, 1, a, fleet).hash);
  });
});

describe('failover paths (the hub UI)', () => {
  const ids = (path: { tiers: Array<Array<{ id: string }>> }) => path.tiers.map((t) => t.map((m) => m.id));

  it('orders tiers as the expansion does, from each gateway, and names the first tier with a healthy instance', () => {
    const [fromA, fromB, fromC] = failoverPaths(hub({ virtualDestinations: [vd] }).virtualDestinations[0]!, fleet);
    expect(fromA).toMatchObject({ from: ['c-a'], activeTier: 0 });
    expect(ids(fromA!)).toEqual([['c-a'], ['c-b'], ['c-c']]);
    expect(fromB!.tiers[0]).toEqual([
      { id: 'c-b', cluster: 'c-b', locality: b.report.locality, healthy: 1, instances: 2 },
    ]);
    // c-c's only instance is unhealthy and no other gateway is in eu-west: its traffic goes to us-east.
    expect(fromC).toMatchObject({ from: ['c-c'], activeTier: 1 });
    expect(ids(fromC!)).toEqual([['c-c'], ['c-a', 'c-b']]);
  });

  it('groups the gateways an active-passive order sends the same way, and has no active tier without a healthy instance', () => {
    const ordered = { ...vd, failover: { order: ['c-c', 'c-b', 'c-a'] } };
    const paths = failoverPaths(hub({ virtualDestinations: [ordered] }).virtualDestinations[0]!, fleet);
    expect(paths).toHaveLength(1);
    expect(paths[0]).toMatchObject({ from: ['c-a', 'c-b', 'c-c'], activeTier: 1 });
    expect(ids(paths[0]!)).toEqual([['c-c'], ['c-b'], ['c-a']]);
    const allDown = member('c-c', 'eu-west', 'zone-a', [['127.0.0.1:3001', false]]);
    const onlyC = failoverPaths(hub({ virtualDestinations: [ordered] }).virtualDestinations[0]!, [allDown]);
    expect(onlyC).toMatchObject([{ from: ['c-c'], activeTier: -1 }]);
  });

  it('leaves out gateways the virtual destination does not target', () => {
    const targeted = { ...vd, targets: { cluster: 'c-a' } };
    const paths = failoverPaths(hub({ virtualDestinations: [targeted] }).virtualDestinations[0]!, fleet);
    expect(paths.map((p) => p.from)).toEqual([['c-a']]);
  });
});

describe('hub config validation', () => {
  it('reports field paths for the document and for managed resources', () => {
    const v = validateHubConfig({
      hub: { address: 'nowhere' },
      routes: [{ name: 'r', match: {}, cluster: 'missing' }],
    });
    expect(v.ok).toBe(false);
    expect(!v.ok && v.errors.map((e) => e.path)).toContain('hub.address');
    const refs = validateHubConfig({ routes: [{ name: 'r', match: {}, cluster: 'missing' }] });
    expect(!refs.ok && refs.errors).toEqual([
      { path: 'routes[0].cluster', message: expect.stringContaining('missing') },
    ]);
    const both = validateHubConfig({
      virtualDestinations: [{ ...vd, failover: { order: ['x'], priorityFromLocality: true } }],
    });
    expect(!both.ok && both.errors.map((e) => e.path)).toEqual(['virtualDestinations[0].failover']);
  });
});

describe('SSE parser', () => {
  it('parses events split across chunks and skips comments', () => {
    const p = new SseParser();
    expect(p.push(': ping\n\nevent: snap')).toEqual([]);
    expect(p.push('shot\ndata: {"a":1}\n\nevent: snapshot\ndata: x\ndata: y\n\n')).toEqual([
      { event: 'snapshot', data: '{"a":1}' },
      { event: 'snapshot', data: 'x\ny' },
    ]);
  });
});
