import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/validate.js';
import type { Config } from '../../../src/config/schema/index.js';
import { eastWestSvidTls, withSvidListeners } from '../../../src/control/managed/svid-tls.js';
import { svidFiles } from '../../../src/control/managed/gateway-svid.js';

const files = svidFiles('/state');
const hub = { url: 'http://hub:9950', token: 't', svid: true };
const svidListener = {
  name: 'ew',
  address: '127.0.0.1:15443',
  protocol: 'https',
  tls: { svid: true, requireClientCert: true },
};

function valid(doc: Record<string, unknown>): Config {
  const v = validateConfig(doc, {});
  if (!v.ok) throw new Error(JSON.stringify(v.errors));
  return v.config;
}

describe('tls.svid listeners', () => {
  it('validate without files when the gateway obtains an SVID, and run with the SVID files', () => {
    const config = valid({ listeners: [svidListener], managementServer: hub });
    const live = withSvidListeners(config, files);
    expect(live.listeners[0]!.tls).toMatchObject({ cert: files.cert, key: files.key, ca: files.bundle, svid: true });
    expect(config.listeners[0]!.tls?.cert).toBeUndefined();
  });

  it('leave a config without tls.svid as it is (the same object)', () => {
    const config = valid({ listeners: [{ name: 'main', address: '127.0.0.1:8080' }] });
    expect(withSvidListeners(config, files)).toBe(config);
  });

  it.each([
    ['tls.svid without managementServer.svid', { listeners: [svidListener] }, 'listeners[0].tls.svid'],
    [
      'tls.svid beside certificate files',
      { listeners: [{ ...svidListener, tls: { svid: true, cert: '/c', key: '/k' } }], managementServer: hub },
      'listeners[0].tls',
    ],
    [
      'managementServer.svid beside eastWest.tls files',
      { managementServer: { ...hub, eastWest: { address: 'gw:15443', tls: { ca: '/ca' } } } },
      'managementServer.eastWest.tls',
    ],
  ])('refuse %s', (_name, doc, path) => {
    const v = validateConfig(doc, {});
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.errors.map((e) => e.path)).toContain(path);
  });
});

describe('east-west clusters with an SVID', () => {
  it('present the SVID (its serial-named copy, so a renewed one gets new pools), trust the bundle, and accept only the SPIFFE IDs of the gateways in the cluster', () => {
    const upstream = {
      cert: '/state/svid/upstream/0A.crt',
      key: '/state/svid/upstream/0A.key',
      bundle: '/state/svid/upstream/0A.bundle.crt',
    };
    const svid = {
      spiffeId: 'spiffe://td/cluster/c-a/gateway/c-a',
      trustDomain: 'td',
      issuedAt: new Date(),
      expiresAt: new Date(),
      serial: '0A',
      files,
      upstream,
    };
    const cluster = {
      name: 'vd.app-b.tier1',
      endpoints: [
        { address: '10.0.0.2:15443', labels: { gateway: 'c-b', cluster: 'east' } },
        { address: '10.0.0.3:15443', labels: { gateway: 'c-c' } },
      ],
      upstreamTls: { sni: 'app-b.mesh.internal' },
    };
    expect(eastWestSvidTls(cluster, svid).upstreamTls).toEqual({
      sni: 'app-b.mesh.internal',
      ca: upstream.bundle,
      cert: upstream.cert,
      key: upstream.key,
      verifySubjectAltName: ['spiffe://td/cluster/east/gateway/c-b', 'spiffe://td/cluster/c-c/gateway/c-c'],
    });
  });
});
