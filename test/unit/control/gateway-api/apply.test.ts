import { describe, it, expect } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigStore } from '../../../../src/control/store/config-store.js';
import { ConfigService } from '../../../../src/control/config-service.js';
import { validateConfig } from '../../../../src/config/validate.js';
import { translate, type GatewayApiSettings } from '../../../../src/control/sources/gateway-api/translate.js';
import { applyGatewayApi } from '../../../../src/control/sources/gateway-api/apply.js';
import type { GatewayApiObjects, HTTPRoute } from '../../../../src/control/sources/gateway-api/objects.js';

const settings: GatewayApiSettings = {
  controllerName: 'meridian.dev/gateway-controller',
  address: '127.0.0.1',
  portMap: { '80': 0 },
  certificateFile: () => '/dev/null',
};

/** A real store and config service (publishing to no workers): what the source goes through in a gateway. */
async function service() {
  const store = new ConfigStore(mkdtempSync(join(tmpdir(), 'meridian-gwapi-')));
  await store.load();
  const base = validateConfig(
    {
      listeners: [{ name: 'admin-made', address: '127.0.0.1:0' }],
      routes: [{ name: 'admin-route', match: { path: { prefix: '/admin' } }, directResponse: { status: 204 } }],
    },
    {},
  );
  if (!base.ok) throw new Error(JSON.stringify(base.errors));
  await store.commit(base.config, 'file');
  return new ConfigService({ store, validate: (c) => validateConfig(c, {}), publish: async () => [] });
}

const route = (name: string, path: HTTPRoute['spec']['rules']): HTTPRoute => ({
  metadata: { name, namespace: 'default', generation: 3, creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: { parentRefs: [{ name: 'gw' }], rules: path },
});

function objects(routes: HTTPRoute[]): GatewayApiObjects {
  return {
    gatewayClasses: [{ metadata: { name: 'meridian' }, spec: { controllerName: settings.controllerName } }],
    gateways: [
      {
        metadata: { name: 'gw', namespace: 'default' },
        spec: { gatewayClassName: 'meridian', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
      },
    ],
    httpRoutes: routes,
    services: [],
    secrets: [],
    referenceGrants: [],
    namespaces: [],
  };
}

describe('applying a Gateway API translation through the config service', () => {
  it('replaces only the Gateway API resources, after the admin API ones; an unchanged view is no new version', async () => {
    const changes = await service();
    const objs = objects([route('a', [{ matches: [{ path: { type: 'Exact', value: '/a' } }] }])]);
    const first = await applyGatewayApi(changes, (refused) => translate(objs, settings, { refused }));
    expect(first.error).toBeUndefined();
    const cfg = changes.current.config;
    expect(cfg.listeners.map((l) => l.name)).toEqual(['admin-made', 'gwapi.port.0']);
    expect(cfg.routes.map((r) => r.name)).toEqual(['admin-route', 'gwapi.default.a.r0.m0.p0']);
    const again = await applyGatewayApi(changes, (refused) => translate(objs, settings, { refused }));
    expect(again.version).toBe(first.version);
    const second = await applyGatewayApi(changes, (refused) => translate(objects([]), settings, { refused }));
    expect(second.version).toBe(first.version! + 1);
    expect(changes.current.config.routes.map((r) => r.name)).toEqual(['admin-route']);
    expect(changes.current.source).toBe('gateway-api');
  });

  it('an HTTPRoute whose translated route fails validation is refused alone (Accepted=False with the error); the others apply', async () => {
    const changes = await service();
    const objs = objects([
      route('broken', [{ matches: [{ path: { type: 'RegularExpression', value: '/(unclosed' } }] }]),
      route('fine', [{ matches: [{ path: { type: 'Exact', value: '/fine' } }] }]),
    ]);
    const r = await applyGatewayApi(changes, (refused) => translate(objs, settings, { refused }));
    expect(r.error).toBeUndefined();
    expect([...r.refused.keys()]).toEqual(['default/broken']);
    expect(changes.current.config.routes.map((x) => x.name)).toEqual(['admin-route', 'gwapi.default.fine.r0.m0.p0']);
    const status = r.translation.status.httpRoutes
      .get('default/broken')![0]
      .conditions.find((c) => c.type === 'Accepted')!;
    expect(status).toMatchObject({ status: 'False', reason: 'UnsupportedValue', observedGeneration: 3 });
    expect(status.message).toContain('route.match.path.regex');
  });
});
