import { describe, it, expect } from 'vitest';
import {
  translate,
  intersectHostnames,
  configName,
  type GatewayApiSettings,
} from '../../../../src/control/sources/gateway-api/translate.js';
import type {
  GatewayApiObjects,
  Gateway,
  HTTPRoute,
  Service,
  GatewayListener,
} from '../../../../src/control/sources/gateway-api/objects.js';
import { validateConfig } from '../../../../src/config/validate.js';

const settings: GatewayApiSettings = {
  controllerName: 'meridian.dev/gateway-controller',
  address: '127.0.0.1',
  portMap: { '80': 18080, '443': 18443 },
  certificateFile: ({ namespace, name }, part) => `/state/gwapi/${namespace}.${name}.${part}`,
};

const meta = (name: string, namespace = 'default', extra: Record<string, unknown> = {}) => ({
  name,
  namespace,
  generation: 1,
  creationTimestamp: '2026-01-01T00:00:00Z',
  ...extra,
});
const gateway = (
  name: string,
  listeners: GatewayListener[],
  namespace = 'default',
  className = 'meridian',
): Gateway => ({
  metadata: meta(name, namespace),
  spec: { gatewayClassName: className, listeners },
});
const service = (
  name: string,
  namespace = 'default',
  ports = [{ name: 'http', port: 8080, targetPort: 3000 }],
): Service => ({
  metadata: meta(name, namespace),
  spec: { ports },
});
const route = (
  name: string,
  spec: HTTPRoute['spec'],
  namespace = 'default',
  created = '2026-01-01T00:00:00Z',
): HTTPRoute => ({
  metadata: meta(name, namespace, { creationTimestamp: created }),
  spec,
});

function objects(parts: Partial<GatewayApiObjects>): GatewayApiObjects {
  return {
    gatewayClasses: [
      { metadata: { name: 'meridian', generation: 2 }, spec: { controllerName: settings.controllerName } },
      { metadata: { name: 'other' }, spec: { controllerName: 'example.com/other' } },
    ],
    gateways: [],
    httpRoutes: [],
    services: [],
    secrets: [],
    referenceGrants: [],
    namespaces: [],
    ...parts,
  };
}

const http80: GatewayListener = { name: 'http', port: 80, protocol: 'HTTP' };
const cond = (conditions: Array<{ type: string; status: string; reason: string }> | undefined, type: string) =>
  conditions?.find((c) => c.type === type);

/** The translation merged into a gateway config must pass validation (names, shapes, references). */
function validated(t: ReturnType<typeof translate>) {
  const r = validateConfig({ listeners: t.listeners, routes: t.routes, clusters: t.clusters }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config;
}

describe('Gateway API translation', () => {
  it('accepts our GatewayClass only; a Gateway of another class is ignored', () => {
    const t = translate(
      objects({
        gateways: [gateway('mine', [http80]), gateway('theirs', [{ ...http80, port: 81 }], 'default', 'other')],
      }),
      settings,
    );
    expect(cond(t.status.gatewayClasses.get('meridian'), 'Accepted')).toMatchObject({
      status: 'True',
      observedGeneration: 2,
    });
    expect(t.status.gatewayClasses.has('other')).toBe(false);
    expect([...t.status.gateways.keys()]).toEqual(['default/mine']);
    expect(t.listeners).toEqual([
      { name: 'gwapi.port.18080', address: '127.0.0.1:18080', protocol: 'http', routes: [] },
    ]);
    const gw = t.status.gateways.get('default/mine')!;
    expect(cond(gw.conditions, 'Programmed')?.status).toBe('True');
    expect(cond(gw.listeners[0].conditions, 'Programmed')?.status).toBe('True');
  });

  it('a simple route: one rule to a Service becomes a kubernetes-discovery cluster; PathPrefix matches whole segments', () => {
    const t = translate(
      objects({
        gateways: [gateway('gw', [http80])],
        services: [service('web')],
        httpRoutes: [
          route('web', {
            parentRefs: [{ name: 'gw' }],
            rules: [
              {
                matches: [{ path: { type: 'PathPrefix', value: '/app/' } }],
                backendRefs: [{ name: 'web', port: 8080 }],
              },
            ],
          }),
        ],
      }),
      settings,
    );
    expect(t.clusters).toEqual([
      {
        name: 'gwapi.svc.default.web.8080',
        discovery: { kubernetes: { namespace: 'default', service: 'web', port: 'http' } },
      },
    ]);
    expect(t.routes.map((r) => [r.name, r.match, r.cluster])).toEqual([
      ['gwapi.default.web.r0.m0.x.p18080', { path: { exact: '/app' } }, 'gwapi.svc.default.web.8080'],
      ['gwapi.default.web.r0.m0.p18080', { path: { prefix: '/app/' } }, 'gwapi.svc.default.web.8080'],
    ]);
    expect(t.listeners[0].routes).toEqual(t.routes.map((r) => r.name));
    const parent = t.status.httpRoutes.get('default/web')![0];
    expect(parent.parentRef).toMatchObject({ name: 'gw', namespace: 'default', kind: 'Gateway' });
    expect(cond(parent.conditions, 'Accepted')?.status).toBe('True');
    expect(cond(parent.conditions, 'ResolvedRefs')?.status).toBe('True');
    expect(t.status.gateways.get('default/gw')!.listeners[0].attachedRoutes).toBe(1);
    validated(t);
  });

  it('weights become a weighted split; a Service port without a name is found by its target port number', () => {
    const t = translate(
      objects({
        gateways: [gateway('gw', [http80])],
        services: [
          service('v1'),
          service('v2', 'default', [{ name: '', port: 80, targetPort: 3000 }] as Service['spec']['ports'] & object),
        ],
        httpRoutes: [
          route('split', {
            parentRefs: [{ name: 'gw' }],
            rules: [
              {
                backendRefs: [
                  { name: 'v1', port: 8080, weight: 70 },
                  { name: 'v2', port: 80, weight: 30 },
                  { name: 'v1', port: 8080, weight: 0 },
                ],
              },
            ],
          }),
        ],
      }),
      settings,
    );
    expect(t.routes).toHaveLength(1);
    expect(t.routes[0]).toMatchObject({
      match: { path: { prefix: '/' } },
      weightedClusters: [
        { cluster: 'gwapi.svc.default.v1.8080', weight: 70 },
        { cluster: 'gwapi.svc.default.v2.80', weight: 30 },
      ],
    });
    expect(t.clusters.find((c) => c.name === 'gwapi.svc.default.v2.80')).toMatchObject({
      discovery: { kubernetes: { port: 3000 } },
    });
    validated(t);
  });

  it('bad backendRefs: ResolvedRefs=False with the spec reason, and the rule answers 500', () => {
    const t = translate(
      objects({
        gateways: [gateway('gw', [{ ...http80, allowedRoutes: { namespaces: { from: 'All' } } }])],
        services: [service('elsewhere', 'other-ns')],
        httpRoutes: [
          route('missing', { parentRefs: [{ name: 'gw' }], rules: [{ backendRefs: [{ name: 'nope', port: 8080 }] }] }),
          route('kind', {
            parentRefs: [{ name: 'gw' }],
            rules: [{ backendRefs: [{ group: 'example.com', kind: 'Bucket', name: 'b' }] }],
          }),
          route('cross', {
            parentRefs: [{ name: 'gw' }],
            rules: [{ backendRefs: [{ name: 'elsewhere', namespace: 'other-ns', port: 8080 }] }],
          }),
          route('none', {
            parentRefs: [{ name: 'gw' }],
            rules: [{ matches: [{ path: { type: 'Exact', value: '/none' } }] }],
          }),
        ],
      }),
      settings,
    );
    const reason = (name: string) => cond(t.status.httpRoutes.get(`default/${name}`)![0].conditions, 'ResolvedRefs');
    expect(reason('missing')).toMatchObject({ status: 'False', reason: 'BackendNotFound' });
    expect(reason('kind')).toMatchObject({ status: 'False', reason: 'InvalidKind' });
    expect(reason('cross')).toMatchObject({ status: 'False', reason: 'RefNotPermitted' });
    expect(reason('none')).toMatchObject({ status: 'True' });
    for (const name of ['missing', 'kind', 'cross'])
      expect(cond(t.status.httpRoutes.get(`default/${name}`)![0].conditions, 'Accepted')?.status).toBe('True');
    expect(t.routes.every((r) => (r.directResponse as { status: number }).status === 500)).toBe(true);
    expect(t.clusters).toEqual([]);
    // A ReferenceGrant in the Service's namespace lets the cross-namespace reference through.
    const granted = translate(
      objects({
        gateways: [gateway('gw', [{ ...http80, allowedRoutes: { namespaces: { from: 'All' } } }])],
        services: [service('elsewhere', 'other-ns')],
        referenceGrants: [
          {
            metadata: meta('allow', 'other-ns'),
            spec: {
              from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'default' }],
              to: [{ group: '', kind: 'Service' }],
            },
          },
        ],
        httpRoutes: [
          route('cross', {
            parentRefs: [{ name: 'gw' }],
            rules: [{ backendRefs: [{ name: 'elsewhere', namespace: 'other-ns', port: 8080 }] }],
          }),
        ],
      }),
      settings,
    );
    expect(granted.routes[0].cluster).toBe('gwapi.svc.other-ns.elsewhere.8080');
  });

  it('attachment: sectionName, allowedRoutes namespaces (Same, All, Selector), hostnames; refused parents attach nothing', () => {
    const t = translate(
      objects({
        namespaces: [{ metadata: { name: 'team-a', labels: { expose: 'yes' } } }, { metadata: { name: 'team-b' } }],
        gateways: [
          gateway(
            'gw',
            [
              { name: 'same', port: 80, protocol: 'HTTP', hostname: 'same.example.com' },
              {
                name: 'selected',
                port: 8081,
                protocol: 'HTTP',
                allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { expose: 'yes' } } } },
              },
              {
                name: 'wild',
                port: 8082,
                protocol: 'HTTP',
                hostname: '*.example.com',
                allowedRoutes: { namespaces: { from: 'All' } },
              },
            ],
            'infra',
          ),
        ],
        services: [service('s', 'team-a'), service('s', 'team-b'), service('s', 'infra')],
        httpRoutes: [
          route(
            'a',
            {
              parentRefs: [{ name: 'gw', namespace: 'infra', sectionName: 'selected' }],
              rules: [{ backendRefs: [{ name: 's', port: 8080 }] }],
            },
            'team-a',
          ),
          route(
            'b',
            {
              parentRefs: [{ name: 'gw', namespace: 'infra', sectionName: 'selected' }],
              rules: [{ backendRefs: [{ name: 's', port: 8080 }] }],
            },
            'team-b',
          ),
          route(
            'c',
            {
              parentRefs: [{ name: 'gw', namespace: 'infra', sectionName: 'wild' }],
              hostnames: ['foo.example.com', 'other.org'],
              rules: [{ backendRefs: [{ name: 's', port: 8080 }] }],
            },
            'team-b',
          ),
          route(
            'd',
            {
              parentRefs: [{ name: 'gw', namespace: 'infra', sectionName: 'wild' }],
              hostnames: ['other.org'],
              rules: [{ backendRefs: [{ name: 's', port: 8080 }] }],
            },
            'team-b',
          ),
          route('e', { parentRefs: [{ name: 'gw', namespace: 'infra', sectionName: 'missing' }], rules: [] }, 'team-b'),
          route(
            'f',
            {
              parentRefs: [{ name: 'gw', namespace: 'infra', sectionName: 'same' }],
              rules: [{ backendRefs: [{ name: 's', port: 8080 }] }],
            },
            'infra',
          ),
        ],
      }),
      settings,
    );
    const accepted = (ns: string, name: string) =>
      cond(t.status.httpRoutes.get(`${ns}/${name}`)![0].conditions, 'Accepted');
    expect(accepted('team-a', 'a')).toMatchObject({ status: 'True' });
    expect(accepted('team-b', 'b')).toMatchObject({ status: 'False', reason: 'NotAllowedByListeners' });
    expect(accepted('team-b', 'c')).toMatchObject({ status: 'True' });
    expect(accepted('team-b', 'd')).toMatchObject({ status: 'False', reason: 'NoMatchingListenerHostname' });
    expect(accepted('team-b', 'e')).toMatchObject({ status: 'False', reason: 'NoMatchingParent' });
    expect(accepted('infra', 'f')).toMatchObject({ status: 'True' });
    expect(t.routes.map((r) => r.name).sort()).toEqual([
      'gwapi.infra.f.r0.m0.p18080',
      'gwapi.team-a.a.r0.m0.p8081',
      'gwapi.team-b.c.r0.m0.p8082',
    ]);
    expect(t.routes.find((r) => r.name.startsWith('gwapi.team-b.c'))!.match).toMatchObject({
      hosts: ['foo.example.com'],
    });
    expect(t.routes.find((r) => r.name.startsWith('gwapi.infra.f'))!.match).toMatchObject({
      hosts: ['same.example.com'],
    });
    const listeners = t.status.gateways.get('infra/gw')!.listeners;
    expect(listeners.map((l) => l.attachedRoutes)).toEqual([1, 1, 1]);
    validated(t);
  });

  it('orders routes by the Gateway API precedence: exact path, then method, header and query matches, then the older route', () => {
    const rules = (matches: HTTPRoute['spec']['rules']) => matches;
    const t = translate(
      objects({
        gateways: [gateway('gw', [http80])],
        services: [service('s')],
        httpRoutes: [
          route(
            'young',
            {
              parentRefs: [{ name: 'gw' }],
              rules: rules([
                { matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: [{ name: 's', port: 8080 }] },
              ]),
            },
            'default',
            '2026-02-01T00:00:00Z',
          ),
          route(
            'old',
            {
              parentRefs: [{ name: 'gw' }],
              rules: rules([
                { matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: [{ name: 's', port: 8080 }] },
                {
                  matches: [
                    { path: { type: 'PathPrefix', value: '/a' }, headers: [{ name: 'version', value: 'two' }] },
                  ],
                  backendRefs: [{ name: 's', port: 8080 }],
                },
                {
                  matches: [{ path: { type: 'PathPrefix', value: '/a' }, method: 'POST' }],
                  backendRefs: [{ name: 's', port: 8080 }],
                },
                { matches: [{ path: { type: 'Exact', value: '/a' } }], backendRefs: [{ name: 's', port: 8080 }] },
              ]),
            },
            'default',
            '2026-01-01T00:00:00Z',
          ),
        ],
      }),
      settings,
    );
    expect(t.routes.map((r) => r.name.replace('gwapi.default.', '').replace('.p18080', ''))).toEqual([
      'old.r3.m0',
      'old.r2.m0.x',
      'old.r1.m0.x',
      'old.r0.m0.x',
      'young.r0.m0.x',
      'old.r2.m0',
      'old.r1.m0',
      'old.r0.m0',
      'young.r0.m0',
    ]);
    validated(t);
  });

  it('HTTPS listeners serve their certificateRefs Secret (written to files); a missing Secret is InvalidCertificateRef', () => {
    const secret = {
      metadata: meta('cert'),
      type: 'kubernetes.io/tls',
      data: { 'tls.crt': Buffer.from('CERT').toString('base64'), 'tls.key': Buffer.from('KEY').toString('base64') },
    };
    const t = translate(
      objects({
        secrets: [secret],
        gateways: [
          gateway('gw', [
            {
              name: 'https',
              port: 443,
              protocol: 'HTTPS',
              hostname: 'a.example.com',
              tls: { certificateRefs: [{ name: 'cert' }] },
            },
            {
              name: 'broken',
              port: 443,
              protocol: 'HTTPS',
              hostname: 'b.example.com',
              tls: { certificateRefs: [{ name: 'gone' }] },
            },
            { name: 'tcp', port: 9000, protocol: 'TCP' },
          ]),
        ],
      }),
      settings,
    );
    expect(t.certificates).toEqual([{ namespace: 'default', name: 'cert', cert: 'CERT', key: 'KEY' }]);
    expect(t.listeners).toEqual([
      {
        name: 'gwapi.port.18443',
        address: '127.0.0.1:18443',
        protocol: 'https',
        routes: [],
        tls: { cert: '/state/gwapi/default.cert.crt', key: '/state/gwapi/default.cert.key' },
      },
    ]);
    const [ok, broken, tcp] = t.status.gateways.get('default/gw')!.listeners;
    expect(cond(ok.conditions, 'Programmed')?.status).toBe('True');
    expect(cond(broken.conditions, 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'InvalidCertificateRef' });
    expect(cond(tcp.conditions, 'Accepted')).toMatchObject({ status: 'False', reason: 'UnsupportedProtocol' });
    expect(tcp.supportedKinds).toEqual([]);
  });

  it('an unsupported or conflicting filter refuses the route (Accepted=False, UnsupportedValue) and adds nothing; header modifiers and redirects translate', () => {
    const t = translate(
      objects({
        gateways: [gateway('gw', [http80])],
        services: [service('s')],
        httpRoutes: [
          route('bad', {
            parentRefs: [{ name: 'gw' }],
            rules: [
              {
                filters: [
                  { type: 'RequestRedirect', requestRedirect: { hostname: 'x' } },
                  { type: 'RequestRedirect', requestRedirect: { hostname: 'y' } },
                ],
              },
            ],
          }),
          route('good', {
            parentRefs: [{ name: 'gw' }],
            rules: [
              {
                matches: [{ path: { type: 'Exact', value: '/h' } }],
                filters: [
                  {
                    type: 'RequestHeaderModifier',
                    requestHeaderModifier: {
                      set: [{ name: 'X-A', value: '1' }],
                      add: [{ name: 'X-B', value: '2' }],
                      remove: ['X-C'],
                    },
                  },
                ],
                backendRefs: [{ name: 's', port: 8080 }],
              },
              {
                matches: [{ path: { type: 'Exact', value: '/r' } }],
                filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'example.org', statusCode: 301 } }],
              },
            ],
          }),
        ],
      }),
      settings,
    );
    expect(cond(t.status.httpRoutes.get('default/bad')![0].conditions, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'UnsupportedValue',
    });
    expect(t.routes.some((r) => r.name.includes('.bad.'))).toBe(false);
    expect(t.routes.find((r) => r.name.includes('good.r0'))).toMatchObject({
      requestHeaders: { set: { 'X-A': '1' }, add: { 'X-B': '2' }, remove: ['X-C'] },
      cluster: 'gwapi.svc.default.s.8080',
    });
    expect(t.routes.find((r) => r.name.includes('good.r1'))).toMatchObject({
      redirect: { host: 'example.org', status: 301, port: 80 },
    });
    expect(t.routes.find((r) => r.name.includes('good.r1'))!.cluster).toBeUndefined();
    validated(t);
  });

  it('URLRewrite (prefix, full path, hostname), RequestMirror and a redirect port translate; backendRef filters other than header modifiers are refused', () => {
    const t = translate(
      objects({
        gateways: [gateway('gw', [http80])],
        services: [service('s'), service('copy')],
        httpRoutes: [
          route('rw', {
            parentRefs: [{ name: 'gw' }],
            rules: [
              {
                matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
                filters: [
                  {
                    type: 'URLRewrite',
                    urlRewrite: {
                      hostname: 'internal',
                      path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' },
                    },
                  },
                ],
                backendRefs: [{ name: 's', port: 8080 }],
              },
              {
                matches: [{ path: { type: 'Exact', value: '/full' } }],
                filters: [
                  {
                    type: 'URLRewrite',
                    urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/replaced' } },
                  },
                  { type: 'RequestMirror', requestMirror: { backendRef: { name: 'copy', port: 8080 }, percent: 50 } },
                ],
                backendRefs: [{ name: 's', port: 8080 }],
              },
            ],
          }),
          route('port', {
            parentRefs: [{ name: 'gw' }],
            hostnames: ['p.example.com'],
            rules: [{ filters: [{ type: 'RequestRedirect', requestRedirect: { port: 8443 } }] }],
          }),
          route('backend-filter', {
            parentRefs: [{ name: 'gw' }],
            hostnames: ['b.example.com'],
            rules: [
              {
                backendRefs: [
                  { name: 's', port: 8080, filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'x' } }] },
                ],
              },
            ],
          }),
        ],
      }),
      settings,
    );
    const byName = (suffix: string) => t.routes.find((r) => r.name === `gwapi.default.${suffix}.p18080`)!;
    expect(byName('rw.r0.m0.x')).toMatchObject({
      match: { path: { exact: '/old' } },
      rewrite: { host: 'internal', pathPrefix: '/new' },
    });
    expect(byName('rw.r0.m0')).toMatchObject({
      match: { path: { prefix: '/old/' } },
      rewrite: { host: 'internal', pathPrefix: '/new/' },
    });
    expect(byName('rw.r1.m0')).toMatchObject({
      rewrite: { path: '/replaced' },
      mirror: { cluster: 'gwapi.svc.default.copy.8080', percent: 50 },
      cluster: 'gwapi.svc.default.s.8080',
    });
    expect(cond(t.status.httpRoutes.get('default/backend-filter')![0].conditions, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'UnsupportedValue',
    });
    // A redirect's port: the filter's; else the scheme's default; else the Gateway listener's port (80 here, not the mapped 18080).
    expect(t.routes.find((r) => r.name.startsWith('gwapi.default.port.'))).toMatchObject({
      redirect: { port: 8443, status: 302 },
    });
    validated(t);
  });

  it("header modifiers on backendRefs apply after the rule's (one set of ops with the same effect); backendRefs of a rule with different filters are refused", () => {
    const mod = (m: Record<string, unknown>) => [{ type: 'RequestHeaderModifier', requestHeaderModifier: m }];
    const t = translate(
      objects({
        gateways: [gateway('gw', [http80])],
        services: [service('s'), service('t')],
        httpRoutes: [
          route('both', {
            parentRefs: [{ name: 'gw' }],
            hostnames: ['a.example.com'],
            rules: [
              {
                filters: mod({
                  set: [
                    { name: 'X-Set', value: 'rule' },
                    { name: 'X-Keep', value: 'k' },
                  ],
                  add: [
                    { name: 'X-Add', value: 'r' },
                    { name: 'X-Gone', value: 'g' },
                  ],
                  remove: ['X-Drop'],
                }),
                backendRefs: [
                  {
                    name: 's',
                    port: 8080,
                    weight: 1,
                    filters: mod({
                      set: [{ name: 'x-set', value: 'backend' }],
                      add: [{ name: 'X-Add', value: 'b' }],
                      remove: ['x-gone'],
                    }),
                  },
                  {
                    name: 't',
                    port: 8080,
                    weight: 1,
                    filters: mod({
                      set: [{ name: 'x-set', value: 'backend' }],
                      add: [{ name: 'X-Add', value: 'b' }],
                      remove: ['x-gone'],
                    }),
                  },
                ],
              },
            ],
          }),
          route('differ', {
            parentRefs: [{ name: 'gw' }],
            hostnames: ['d.example.com'],
            rules: [
              {
                backendRefs: [
                  { name: 's', port: 8080, filters: mod({ set: [{ name: 'X-A', value: '1' }] }) },
                  { name: 't', port: 8080 },
                ],
              },
            ],
          }),
        ],
      }),
      settings,
    );
    const both = t.routes.find((r) => r.name.startsWith('gwapi.default.both.'))!;
    expect(both.requestHeaders).toEqual({
      set: { 'X-Keep': 'k', 'x-set': 'backend' },
      add: { 'X-Add': 'r,b' },
      remove: ['x-drop', 'x-gone'],
    });
    expect(both.weightedClusters).toHaveLength(2);
    expect(cond(t.status.httpRoutes.get('default/differ')![0].conditions, 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'UnsupportedValue',
      message: 'backendRefs of one rule with different filters are not supported',
    });
    expect(t.routes.some((r) => r.name.startsWith('gwapi.default.differ.'))).toBe(false);
    validated(t);
  });

  it('is deterministic: the same objects in another order give the same config', () => {
    const parts = {
      gateways: [gateway('gw', [http80])],
      services: [service('s'), service('t')],
      httpRoutes: [
        route('one', { parentRefs: [{ name: 'gw' }], rules: [{ backendRefs: [{ name: 's', port: 8080 }] }] }),
        route('two', {
          parentRefs: [{ name: 'gw' }],
          hostnames: ['x.org'],
          rules: [{ backendRefs: [{ name: 't', port: 8080 }] }],
        }),
      ],
    };
    const a = translate(objects(parts), settings);
    const b = translate(
      objects({ ...parts, httpRoutes: [...parts.httpRoutes].reverse(), services: [...parts.services].reverse() }),
      settings,
    );
    expect(JSON.stringify([b.listeners, b.routes, b.clusters])).toBe(
      JSON.stringify([a.listeners, a.routes, a.clusters]),
    );
  });
});

describe('hostname intersection', () => {
  it.each([
    [undefined, undefined, undefined],
    [['a.com'], undefined, ['a.com']],
    [undefined, 'a.com', ['a.com']],
    [['a.com'], 'a.com', ['a.com']],
    [['a.com'], 'b.com', null],
    [['foo.example.com'], '*.example.com', ['foo.example.com']],
    [['*.example.com'], 'foo.example.com', ['foo.example.com']],
    [['*.example.com'], '*.example.com', ['*.example.com']],
    [['*.foo.example.com'], '*.example.com', ['*.foo.example.com']],
    [['example.com'], '*.example.com', null],
    [['a.com', '*.example.com'], 'x.example.com', ['x.example.com']],
  ])('route %j on listener %j -> %j', (route, listener, want) => {
    expect(intersectHostnames(route as string[] | undefined, listener as string | undefined)).toEqual(want);
  });

  it('names stay within 128 characters and unique', () => {
    const long = configName(['a'.repeat(100), 'b'.repeat(60)]);
    const other = configName(['a'.repeat(100), 'c'.repeat(60)]);
    expect(long.length).toBeLessThanOrEqual(128);
    expect(long).not.toBe(other);
  });
  it("with an addresses pool each Gateway opens on its own address (two on port 80 do not share routes); an assignment is kept from status; asked-for or exhausted addresses are refused with the spec's reasons", () => {
    const pool = { ...settings, addresses: ['127.0.0.2', '127.0.0.3'] };
    const older = gateway('a', [http80]);
    const newer = {
      ...gateway('b', [http80]),
      metadata: meta('b', 'default', { creationTimestamp: '2026-01-02T00:00:00Z' }),
    };
    const routes = [
      route('ra', { parentRefs: [{ name: 'a' }], rules: [{ backendRefs: [{ name: 'web', port: 8080 }] }] }),
      route('rb', { parentRefs: [{ name: 'b' }], rules: [{ backendRefs: [{ name: 'api', port: 8080 }] }] }),
    ];
    const t = translate(
      objects({ gateways: [newer, older], services: [service('web'), service('api')], httpRoutes: routes }),
      pool,
    );
    validated(t);
    expect(t.listeners.map((l) => [l.name, l.address])).toEqual([
      ['gwapi.127-0-0-2.port.18080', '127.0.0.2:18080'],
      ['gwapi.127-0-0-3.port.18080', '127.0.0.3:18080'],
    ]);
    const clusterOf = (l: Record<string, unknown>) =>
      (l.routes as string[]).map((n) => t.routes.find((r) => r.name === n)!.cluster);
    expect(clusterOf(t.listeners[0])).toEqual(['gwapi.svc.default.web.8080']);
    expect(clusterOf(t.listeners[1])).toEqual(['gwapi.svc.default.api.8080']);
    expect([t.status.gateways.get('default/a')!.address, t.status.gateways.get('default/b')!.address]).toEqual([
      '127.0.0.2',
      '127.0.0.3',
    ]);
    // The newer Gateway's status says .2 (assigned before the older one came): it keeps it, the older one takes .3.
    const kept = translate(
      objects({ gateways: [{ ...newer, status: { addresses: [{ type: 'IPAddress', value: '127.0.0.2' }] } }, older] }),
      pool,
    );
    expect([kept.status.gateways.get('default/a')!.address, kept.status.gateways.get('default/b')!.address]).toEqual([
      '127.0.0.3',
      '127.0.0.2',
    ]);
    // A third Gateway finds the pool used up; one asking for an address outside it is refused.
    const third = {
      ...gateway('c', [http80]),
      metadata: meta('c', 'default', { creationTimestamp: '2026-01-03T00:00:00Z' }),
    };
    const asking = {
      ...gateway('d', [http80]),
      spec: { ...gateway('d', [http80]).spec, addresses: [{ type: 'IPAddress', value: '10.9.9.9' }] },
    };
    const full = translate(objects({ gateways: [older, newer, third, asking] }), pool);
    expect(cond(full.status.gateways.get('default/c')!.conditions, 'Programmed')).toMatchObject({
      status: 'False',
      reason: 'AddressNotAssigned',
    });
    expect(cond(full.status.gateways.get('default/d')!.conditions, 'Programmed')).toMatchObject({
      status: 'False',
      reason: 'AddressNotUsable',
    });
    expect(full.status.gateways.get('default/c')!.address).toBeUndefined();
    expect(full.listeners).toHaveLength(2);
    // Asking for a pool address gets it, ahead of status and age.
    const asked = translate(
      objects({
        gateways: [
          older,
          { ...newer, spec: { ...newer.spec, addresses: [{ type: 'IPAddress', value: '127.0.0.2' }] } },
        ],
      }),
      pool,
    );
    expect(asked.status.gateways.get('default/b')!.address).toBe('127.0.0.2');
    expect(asked.status.gateways.get('default/a')!.address).toBe('127.0.0.3');
  });
});
