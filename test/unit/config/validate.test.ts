import { describe, it, expect } from 'vitest';
import { validateConfig, pointerToPath } from '../../../src/config/validate.js';

const base = () => ({
  listeners: [{ name: 'main', address: '127.0.0.1:8080' }],
  routes: [{ name: 'r', match: { path: { prefix: '/' } }, cluster: 'c' }],
  clusters: [{ name: 'c', endpoints: [{ address: '127.0.0.1:9000' }] }],
});

function errorsOf(input: unknown, env: NodeJS.ProcessEnv = {}) {
  const r = validateConfig(input, env);
  return r.ok ? [] : r.errors;
}

describe('config validation', () => {
  it('accepts a minimal config and fills defaults', () => {
    const r = validateConfig(base(), {});
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.admin.address).toBe('127.0.0.1:9901');
    expect(r.config.gateway.workers).toBe('auto');
    expect(r.config.routes[0].timeout).toBe('15s');
    expect(r.config.clusters[0].lb.overprovisioningFactor).toBe(1.4);
    expect(r.config.clusters[0].endpoints[0].weight).toBe(1);
    expect(r.config.gateway.limits.maxHeaders).toBe(100);
    // The edge defaults (docs/security.md): 10 MiB bodies, 15 s for a head, a body progressing >= 500 B/s.
    expect(r.config.gateway.limits.maxBodyBytes).toBe(10 * 1024 * 1024);
    expect(r.config.gateway.limits.headersTimeout).toBe('15s');
    expect(r.config.gateway.limits.bodyTimeout).toBe('15s');
    expect(r.config.gateway.limits.bodyMinRate).toBe(500);
    expect(r.config.admin.insecure).toBe(false);
    expect(Object.isFrozen(r.config.clusters[0].endpoints[0])).toBe(true);
  });

  it('admin.insecure lets an unauthenticated admin API bind a non-loopback address', () => {
    const c = base() as { admin?: unknown };
    c.admin = { address: '0.0.0.0:9901', insecure: true };
    expect(errorsOf(c)).toEqual([]);
    c.admin = { address: '0.0.0.0:9901' };
    expect(
      errorsOf(c)
        .map((e) => e.message)
        .join(),
    ).toContain('admin.insecure: true overrides');
  });

  it('refuses a cluster over gateway.limits.maxEndpointsPerCluster, naming the field (default 100,000)', () => {
    const c = base() as { gateway?: unknown; clusters: Array<{ endpoints: unknown[] }> };
    c.clusters[0].endpoints = Array.from({ length: 4 }, (_, i) => ({ address: `10.0.0.${i + 1}:80` }));
    c.gateway = { limits: { maxEndpointsPerCluster: 3 } };
    expect(errorsOf(c)).toEqual([
      { path: 'clusters[0].endpoints', message: '4 endpoints is over gateway.limits.maxEndpointsPerCluster (3)' },
    ]);
    c.gateway = { limits: { maxEndpointsPerCluster: 4 } };
    expect(errorsOf(c)).toEqual([]);
    const r = validateConfig(base(), {});
    expect(r.ok && r.config.gateway.limits.maxEndpointsPerCluster).toBe(100000);
  });

  it('converts JSON pointers to field paths', () => {
    expect(pointerToPath('/clusters/2/endpoints/0/address')).toBe('clusters[2].endpoints[0].address');
    expect(pointerToPath('')).toBe('(root)');
  });

  const cases: Array<[string, (c: any) => void, string, RegExp]> = [
    [
      'a bad endpoint address',
      (c) => (c.clusters[0].endpoints[0].address = 'nohostport'),
      'clusters[0].endpoints[0].address',
      /host:port/,
    ],
    [
      'an unknown cluster on a route',
      (c) => (c.routes[0].cluster = 'missing'),
      'routes[0].cluster',
      /unknown cluster "missing"/,
    ],
    ['a route with two actions', (c) => (c.routes[0].directResponse = { status: 200 }), 'routes[0]', /exactly one/],
    ['a route with no action', (c) => delete c.routes[0].cluster, 'routes[0]', /exactly one/],
    ['a bad duration', (c) => (c.routes[0].timeout = '10 seconds'), 'routes[0].timeout', /duration/],
    ['an unknown key', (c) => (c.clusters[0].endpoint = []), 'clusters[0].endpoint', /Unexpected property/],
    [
      'a bad listener protocol',
      (c) => (c.listeners[0].protocol = 'ftp'),
      'listeners[0].protocol',
      /http, https or tls-passthrough/,
    ],
    ['a duplicate route name', (c) => c.routes.push({ ...c.routes[0] }), 'routes[1].name', /duplicate name "r"/],
    [
      'a duplicate endpoint',
      (c) => c.clusters[0].endpoints.push({ address: '127.0.0.1:9000' }),
      'clusters[0].endpoints[1].address',
      /duplicate endpoint/,
    ],
    [
      'an invalid regex',
      (c) => (c.routes[0].match.path = { regex: '(' }),
      'routes[0].match.path.regex',
      /invalid regular expression/,
    ],
    [
      'an unknown listener route',
      (c) => (c.listeners[0].routes = ['nope']),
      'listeners[0].routes[0]',
      /unknown route "nope"/,
    ],
    ['https without certificates', (c) => (c.listeners[0].protocol = 'https'), 'listeners[0].tls', /needs tls.cert/],
    ['a weight out of range', (c) => (c.clusters[0].endpoints[0].weight = 0), 'clusters[0].endpoints[0].weight', /.+/],
    ['a bad LB policy', (c) => (c.clusters[0].lb = { policy: 'fastest' }), 'clusters[0].lb.policy', /round_robin/],
    [
      'an unknown mirror cluster',
      (c) => (c.routes[0].mirror = { cluster: 'x' }),
      'routes[0].mirror.cluster',
      /unknown cluster "x"/,
    ],
    [
      'an aggregate naming a missing cluster',
      (c) => c.clusters.push({ name: 'agg', kind: 'aggregate', clusters: ['zz'] }),
      'clusters[1].clusters[0]',
      /unknown cluster "zz"/,
    ],
    [
      'a non-loopback admin without token',
      (c) => (c.admin = { address: '0.0.0.0:9901' }),
      'admin.address',
      /requires admin.token/,
    ],
    ['an unknown rbac policy', (c) => (c.routes[0].rbac = 'nope'), 'routes[0].rbac', /unknown rbac policy/],
  ];
  for (const [what, mutate, path, message] of cases) {
    it(`rejects ${what} with the field path`, () => {
      const c = base();
      mutate(c);
      const errors = errorsOf(c);
      const hit = errors.find((e) => e.path === path);
      expect(hit, JSON.stringify(errors)).toBeDefined();
      expect(hit!.message).toMatch(message);
    });
  }

  it('reports every error, not only the first', () => {
    const c: any = base();
    c.clusters[0].endpoints[0].address = 'x';
    c.routes[0].timeout = 'soon';
    const paths = errorsOf(c).map((e) => e.path);
    expect(paths).toContain('clusters[0].endpoints[0].address');
    expect(paths).toContain('routes[0].timeout');
  });

  it('substitutes ${VAR} and ${VAR:-default} in strings', () => {
    const c: any = base();
    c.clusters[0].endpoints[0].address = '${UP_HOST}:${UP_PORT:-9001}';
    const r = validateConfig(c, { UP_HOST: '10.1.2.3' });
    expect(r.ok && r.config.clusters[0].endpoints[0].address).toBe('10.1.2.3:9001');
  });

  it('rejects an unset variable without default at its path', () => {
    const c: any = base();
    c.admin = { token: '${ADMIN_TOKEN}' };
    expect(errorsOf(c)).toEqual([{ path: 'admin.token', message: 'environment variable ADMIN_TOKEN is not set' }]);
  });
});
