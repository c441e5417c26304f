import { describe, it, expect } from 'vitest';
import { pino } from 'pino';
import { compilePolicy, createRbacFilter } from '../../../src/filters/authz/rbac.js';
import { compileCidr, compileGlob } from '../../../src/filters/authz/matchers.js';
import { validateConfig } from '../../../src/config/validate.js';
import { registry } from '../../../src/observability/metrics.js';
import type { RbacPolicyConfig } from '../../../src/config/schema/auth.js';
import type { PeerIdentity, RequestContext } from '../../../src/filters/filter.js';

const log = pino({ level: 'silent' });

function policy(rules: unknown[], shadow = false, name = 'p'): RbacPolicyConfig {
  const r = validateConfig({ rbac: [{ name, shadow, rules }] }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config.rbac[0];
}

function ctx(o: Partial<RequestContext> = {}): RequestContext {
  return {
    method: 'GET',
    path: '/admin/x',
    query: '',
    authority: 'h',
    headers: {},
    clientIp: '192.0.2.10',
    peer: undefined,
    routeName: 'r',
    requestId: '',
    upstreamHeaders: [],
    upstreamStrip: [],
    responseHeaders: [],
    ...o,
  };
}

const peer = (spiffeId: string): PeerIdentity => ({
  subject: '',
  dnsNames: [],
  uris: [spiffeId],
  spiffeId,
  fingerprint: '',
});

function decisions(name: string, decision: string, shadow: string): number {
  const m = registry.getSingleMetric('meridian_rbac_decisions_total') as unknown as {
    hashMap: Record<string, { value: number; labels: Record<string, string> }>;
  };
  return (
    Object.values(m.hashMap).find(
      (v) => v.labels.policy === name && v.labels.decision === decision && v.labels.shadow === shadow,
    )?.value ?? 0
  );
}

describe('glob and CIDR matchers', () => {
  const globs: Array<[string, string, boolean]> = [
    ['/admin/*', '/admin/x', true],
    ['/admin/*', '/admin/a/b', true],
    ['/admin/*', '/admin', false],
    ['/admin/*', '/administrator', false],
    ['/admin', '/admin', true],
    ['/admin', '/admin/', false],
    ['*.json', '/a/b.json', true],
    ['/v*/users/*', '/v2/users/1', true],
    ['/v*/users/*', '/v2/groups/1', false],
    ['/a*a*a*a*b', `/${'a'.repeat(5000)}`, false],
    ['spiffe://prod.example/ns/ops/*', 'spiffe://prod.example/ns/ops/sa/x', true],
    ['spiffe://prod.example/ns/ops/*', 'spiffe://prod.example/ns/opsx/sa/x', false],
    ['spiffe://*/ns/ops/sa/x', 'spiffe://other.example/ns/ops/sa/x', true],
    ['ab*ba', 'aba', false],
  ];
  for (const [glob, input, ok] of globs)
    it(`${ok ? 'matches' : 'does not match'} ${input.slice(0, 40)} against ${glob}`, () =>
      expect(compileGlob(glob)(input)).toBe(ok));

  const cidrs: Array<[string, string, boolean]> = [
    ['10.0.0.0/8', '10.200.1.1', true],
    ['10.0.0.0/8', '11.0.0.1', false],
    ['10.0.0.0/8', '::ffff:10.1.2.3', true],
    ['192.0.2.7', '192.0.2.7', true],
    ['192.0.2.7', '192.0.2.8', false],
    ['fd00::/8', 'fd12::1', true],
    ['fd00::/8', 'fe80::1', false],
    ['2001:db8::/32', '2001:db8:ffff::1', true],
    ['10.0.0.0/8', 'not-an-ip', false],
    ['10.0.0.0/8', '', false],
  ];
  for (const [cidr, ip, ok] of cidrs)
    it(`${ok ? 'includes' : 'excludes'} ${ip || '(empty)'} in ${cidr}`, () => expect(compileCidr(cidr)(ip)).toBe(ok));
});

describe('RBAC decisions', () => {
  const admin = compilePolicy(
    policy([
      {
        action: 'allow',
        principals: [{ spiffeId: 'spiffe://prod.example/ns/ops/*' }, { claim: { name: 'roles', contains: 'admin' } }],
        permissions: [{ methods: ['GET', 'POST'], paths: ['/admin/*'] }],
      },
      {
        action: 'allow',
        principals: [{ consumer: 'acme' }],
        permissions: [
          {
            methods: ['GET'],
            paths: ['/admin/reports', '/admin/reports/*'],
            headers: [{ name: 'x-tenant', prefix: 'acme-' }],
          },
        ],
      },
      {
        action: 'deny',
        principals: [{ sourceCidr: '203.0.113.0/24' }, { claim: { name: 'realm.status', equals: 'suspended' } }],
        permissions: [{}],
      },
      { action: 'allow', principals: [{ any: true }], permissions: [{ paths: ['/admin/health'] }] },
    ]),
  );
  const table: Array<[string, Partial<RequestContext>, boolean, number]> = [
    ['an ops SPIFFE ID on GET /admin/x', { peer: peer('spiffe://prod.example/ns/ops/sa/x') }, true, 0],
    [
      'an ops SPIFFE ID on POST /admin/a/b',
      { peer: peer('spiffe://prod.example/ns/ops/sa/x'), method: 'POST', path: '/admin/a/b' },
      true,
      0,
    ],
    ['a dev SPIFFE ID', { peer: peer('spiffe://prod.example/ns/dev/sa/y') }, false, -1],
    ['an ops path in another trust domain', { peer: peer('spiffe://other.example/ns/ops/sa/x') }, false, -1],
    ['an admin role in an array claim', { claims: { roles: ['user', 'admin'] } }, true, 0],
    ['an admin role in a space-delimited claim', { claims: { roles: 'user admin' } }, true, 0],
    ['a role that only starts with admin', { claims: { roles: 'administrator' } }, false, -1],
    ['a user role', { claims: { roles: ['user'] } }, false, -1],
    ['no identity at all', {}, false, -1],
    ['DELETE by an admin (method not permitted)', { claims: { roles: ['admin'] }, method: 'DELETE' }, false, -1],
    ['an admin on /admin itself (glob needs a child)', { claims: { roles: ['admin'] }, path: '/admin' }, false, -1],
    ['an admin outside /admin', { claims: { roles: ['admin'] }, path: '/public' }, false, -1],
    ['an admin from a denied network (deny wins)', { claims: { roles: ['admin'] }, clientIp: '203.0.113.9' }, false, 2],
    [
      'an admin whose nested status is suspended (deny wins)',
      { claims: { roles: ['admin'], realm: { status: 'suspended' } } },
      false,
      2,
    ],
    [
      'consumer acme reading reports with its tenant header',
      { consumer: 'acme', path: '/admin/reports', headers: { 'x-tenant': 'acme-eu' } },
      true,
      1,
    ],
    ['consumer acme without the tenant header', { consumer: 'acme', path: '/admin/reports' }, false, -1],
    [
      'consumer acme with another tenant',
      { consumer: 'acme', path: '/admin/reports/2024', headers: { 'x-tenant': 'globex' } },
      false,
      -1,
    ],
    [
      'consumer acme posting reports',
      { consumer: 'acme', method: 'POST', path: '/admin/reports', headers: { 'x-tenant': 'acme-eu' } },
      false,
      -1,
    ],
    ['anyone on /admin/health', { path: '/admin/health' }, true, 3],
    ['anyone on /admin/health from a denied network', { path: '/admin/health', clientIp: '203.0.113.1' }, false, 2],
  ];
  for (const [what, c, allowed, rule] of table) {
    it(`${allowed ? 'allows' : 'denies'} ${what} (rule ${rule})`, () =>
      expect(admin.evaluate(ctx(c))).toEqual({ allowed, rule }));
  }

  const claims: Array<[string, unknown, Record<string, unknown>, boolean]> = [
    ['equals on a string', { name: 'tier', equals: 'gold' }, { tier: 'gold' }, true],
    ['equals on a number', { name: 'level', equals: '3' }, { level: 3 }, true],
    ['equals on a boolean', { name: 'staff', equals: 'true' }, { staff: true }, true],
    ['equals against an array', { name: 'tier', equals: 'gold' }, { tier: ['gold'] }, false],
    ['in on a scalar', { name: 'tier', in: ['gold', 'silver'] }, { tier: 'silver' }, true],
    ['in on a scalar not listed', { name: 'tier', in: ['gold'] }, { tier: 'bronze' }, false],
    [
      'contains in a nested array',
      { name: 'realm_access.roles', contains: 'ops' },
      { realm_access: { roles: ['ops'] } },
      true,
    ],
    [
      'a URL-like claim name with dots',
      { name: 'https://example.com/roles', contains: 'ops' },
      { 'https://example.com/roles': ['ops'] },
      true,
    ],
    ['a path through an array', { name: 'a.0', equals: 'x' }, { a: ['x'] }, false],
    ['a prototype key', { name: 'constructor.name', equals: 'Object' }, {}, false],
    ['a missing claim', { name: 'tier', equals: 'gold' }, {}, false],
  ];
  for (const [what, claim, c, ok] of claims) {
    it(`claim principal: ${what} ${ok ? 'matches' : 'does not match'}`, () => {
      const p = compilePolicy(policy([{ action: 'allow', principals: [{ claim }] }]));
      expect(p.evaluate(ctx({ claims: c })).allowed).toBe(ok);
    });
  }

  it('treats mTLS, JWT or API-key identity as authenticated, and nothing else', () => {
    const p = compilePolicy(policy([{ action: 'allow', principals: [{ authenticated: true }] }]));
    expect(
      [{ peer: peer('spiffe://td/x') }, { claims: {} }, { consumer: 'c' }, {}].map((c) => p.evaluate(ctx(c)).allowed),
    ).toEqual([true, true, true, false]);
  });

  it('matches header presence and absence', () => {
    const p = compilePolicy(
      policy([
        {
          action: 'allow',
          permissions: [
            {
              headers: [
                { name: 'X-Debug', present: false },
                { name: 'x-req', present: true },
              ],
            },
          ],
        },
      ]),
    );
    expect(p.evaluate(ctx({ headers: { 'x-req': '1' } })).allowed).toBe(true);
    expect(p.evaluate(ctx({ headers: { 'x-req': '1', 'x-debug': '1' } })).allowed).toBe(false);
    expect(p.evaluate(ctx()).allowed).toBe(false);
  });
});

describe('RBAC filter', () => {
  it('answers 403 forbidden and counts a denial', () => {
    const f = createRbacFilter(
      policy([{ action: 'allow', principals: [{ consumer: 'acme' }] }], false, 'enforced'),
      log,
    );
    expect(f.onRequest(ctx())).toEqual({ status: 403, code: 'forbidden', body: 'forbidden\n' });
    expect(f.onRequest(ctx({ consumer: 'acme' }))).toBeUndefined();
    expect([decisions('enforced', 'deny', 'false'), decisions('enforced', 'allow', 'false')]).toEqual([1, 1]);
  });

  it('in shadow mode lets a denied request through but counts it as a shadow denial', () => {
    const f = createRbacFilter(policy([{ action: 'allow', principals: [{ consumer: 'nobody' }] }], true, 'dry'), log);
    expect(f.onRequest(ctx())).toBeUndefined();
    expect(decisions('dry', 'deny', 'true')).toBe(1);
    expect(decisions('dry', 'deny', 'false')).toBe(0);
  });
});
