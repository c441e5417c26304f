import { describe, it, expect } from 'vitest';
import { pino } from 'pino';
import { createRbacFilter } from '../../../src/filters/authz/rbac.js';
import { validateConfig } from '../../../src/config/validate.js';
import type { RequestContext } from '../../../src/filters/filter.js';

const log = pino({ level: 'silent' });

function policy(rules: unknown[], shadow = false) {
  const r = validateConfig({ rbac: [{ name: 'p', shadow, rules }] }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return createRbacFilter(r.config.rbac[0], log);
}

function ctx(o: Partial<RequestContext> = {}): RequestContext {
  return {
    method: 'GET',
    path: '/admin/x',
    query: '',
    authority: 'h',
    headers: {},
    clientIp: '10.1.2.3',
    peer: undefined,
    routeName: 'r',
    requestId: '',
    upstreamHeaders: [],
    upstreamStrip: [],
    responseHeaders: [],
    ...o,
  };
}

const peer = (spiffeId: string) => ({ subject: '', dnsNames: [], uris: [spiffeId], spiffeId, fingerprint: '' });
const allowed = (f: ReturnType<typeof policy>, c: RequestContext) => f.onRequest(c) === undefined;

describe('RBAC', () => {
  const admin = policy([
    {
      action: 'allow',
      principals: [{ spiffeId: 'spiffe://prod.example/ns/ops/*' }, { claim: { name: 'roles', contains: 'admin' } }],
      permissions: [{ methods: ['GET', 'POST'], paths: ['/admin/*'] }],
    },
    { action: 'deny', principals: [{ sourceCidr: '10.9.0.0/16' }], permissions: [{}] },
  ]);
  const table: Array<[string, Partial<RequestContext>, boolean]> = [
    ['an ops SPIFFE ID on GET /admin/x', { peer: peer('spiffe://prod.example/ns/ops/sa/a') }, true],
    ['another namespace', { peer: peer('spiffe://prod.example/ns/dev/sa/a') }, false],
    ['an admin role claim', { claims: { roles: ['user', 'admin'] } }, true],
    ['a space-delimited scope-like claim', { claims: { roles: 'user admin' } }, true],
    ['a user role claim', { claims: { roles: ['user'] } }, false],
    ['no identity', {}, false],
    ['DELETE by an admin (method not permitted)', { claims: { roles: ['admin'] }, method: 'DELETE' }, false],
    ['an admin outside /admin', { claims: { roles: ['admin'] }, path: '/public' }, false],
    ['an admin from a denied network (deny wins)', { claims: { roles: ['admin'] }, clientIp: '10.9.3.4' }, false],
  ];
  for (const [what, c, ok] of table)
    it(`${ok ? 'allows' : 'denies'} ${what}`, () => expect(allowed(admin, ctx(c))).toBe(ok));

  it('answers 403 forbidden when denied', () => {
    expect(admin.onRequest(ctx())).toMatchObject({ status: 403, code: 'forbidden' });
  });

  it('reads nested claims by dotted path', () => {
    const f = policy([
      { action: 'allow', principals: [{ claim: { name: 'realm.roles', contains: 'ops' } }], permissions: [{}] },
    ]);
    expect(allowed(f, ctx({ claims: { realm: { roles: ['ops'] } } }))).toBe(true);
    expect(allowed(f, ctx({ claims: { realm: { roles: ['dev'] } } }))).toBe(false);
  });

  it('matches API-key consumers, IPv6 CIDRs and headers', () => {
    const f = policy([
      {
        action: 'allow',
        principals: [{ consumer: 'acme' }, { sourceCidr: 'fd00::/8' }],
        permissions: [{ headers: [{ name: 'x-tenant', exact: 't1' }] }],
      },
    ]);
    expect(allowed(f, ctx({ consumer: 'acme', headers: { 'x-tenant': 't1' } }))).toBe(true);
    expect(allowed(f, ctx({ clientIp: 'fd00::1', headers: { 'x-tenant': 't1' } }))).toBe(true);
    expect(allowed(f, ctx({ consumer: 'acme', headers: { 'x-tenant': 't2' } }))).toBe(false);
  });

  it('shadow mode only logs and counts', () => {
    const f = policy([{ action: 'allow', principals: [{ consumer: 'nobody' }], permissions: [{}] }], true);
    expect(allowed(f, ctx())).toBe(true);
  });
});
