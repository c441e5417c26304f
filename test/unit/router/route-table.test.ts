import { describe, it, expect } from 'vitest';
import { RouteTable, hostOf } from '../../../src/router/route-table.js';
import { validateConfig } from '../../../src/config/validate.js';

function table(routes: unknown[]) {
  const r = validateConfig({ routes, clusters: [{ name: 'c', endpoints: [] }] }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return new RouteTable(r.config.routes.map((config) => ({ config, payload: config.name })));
}

const req = (headers: Record<string, string> = {}) => ({ headers });

describe('route table precedence', () => {
  const t = table([
    { name: 'any-prefix', match: { path: { prefix: '/' } }, cluster: 'c' },
    { name: 'api-prefix', match: { path: { prefix: '/api' } }, cluster: 'c' },
    { name: 'api-v1-prefix', match: { path: { prefix: '/api/v1' } }, cluster: 'c' },
    { name: 'api-exact', match: { path: { exact: '/api/status' } }, cluster: 'c' },
    { name: 'regex', match: { path: { regex: '/api/v1/users/[0-9]+' } }, cluster: 'c' },
    { name: 'wild-host', match: { hosts: ['*.example.com'], path: { prefix: '/' } }, cluster: 'c' },
    { name: 'deep-wild-host', match: { hosts: ['*.eu.example.com'], path: { prefix: '/' } }, cluster: 'c' },
    { name: 'exact-host', match: { hosts: ['api.example.com'], path: { prefix: '/' } }, cluster: 'c' },
    { name: 'post-only', match: { path: { prefix: '/write' }, methods: ['POST'] }, cluster: 'c' },
    {
      name: 'header-canary',
      match: { path: { prefix: '/app' }, headers: [{ name: 'x-canary', exact: '1' }] },
      cluster: 'c',
    },
    { name: 'app', match: { path: { prefix: '/app' } }, cluster: 'c' },
    { name: 'query-debug', match: { path: { prefix: '/q' }, query: [{ name: 'debug', exact: 'true' }] }, cluster: 'c' },
    { name: 'first-tie', match: { path: { prefix: '/tie' } }, cluster: 'c' },
    { name: 'second-tie', match: { path: { prefix: '/tie' } }, cluster: 'c' },
  ]);
  const rows: Array<[string, string, string, Record<string, string>, string, string | undefined]> = [
    ['other.org', '/', 'GET', {}, '', 'any-prefix'],
    ['other.org', '/api/x', 'GET', {}, '', 'api-prefix'],
    ['other.org', '/api/v1/x', 'GET', {}, '', 'api-v1-prefix'],
    ['other.org', '/api/status', 'GET', {}, '', 'api-exact'],
    ['other.org', '/api/v1/users/42', 'GET', {}, '', 'regex'],
    ['other.org', '/api/v1/users/me', 'GET', {}, '', 'api-v1-prefix'],
    ['api.example.com', '/anything', 'GET', {}, '', 'exact-host'],
    ['www.example.com', '/anything', 'GET', {}, '', 'wild-host'],
    ['x.eu.example.com', '/anything', 'GET', {}, '', 'deep-wild-host'],
    ['example.com', '/anything', 'GET', {}, '', 'any-prefix'],
    ['other.org', '/write', 'POST', {}, '', 'post-only'],
    ['other.org', '/write', 'GET', {}, '', 'any-prefix'],
    ['other.org', '/app/1', 'GET', { 'x-canary': '1' }, '', 'header-canary'],
    ['other.org', '/app/1', 'GET', { 'x-canary': '0' }, '', 'app'],
    ['other.org', '/q', 'GET', {}, '?debug=true', 'query-debug'],
    ['other.org', '/q', 'GET', {}, '?debug=false', 'any-prefix'],
    ['other.org', '/tie', 'GET', {}, '', 'first-tie'],
  ];
  for (const [host, path, method, headers, query, expected] of rows) {
    it(`routes ${method} ${host}${path}${query} ${JSON.stringify(headers)} to ${expected}`, () => {
      expect(t.match(host, path, method, req(headers), query)).toBe(expected);
    });
  }

  it('uses a regex route when no prefix matches', () => {
    const t2 = table([
      { name: 'regex', match: { path: { regex: '/users/[0-9]+' } }, cluster: 'c' },
      { name: 'exact', match: { path: { exact: '/users/me' } }, cluster: 'c' },
    ]);
    expect(t2.match('h', '/users/7', 'GET', req(), '')).toBe('regex');
    expect(t2.match('h', '/users/me', 'GET', req(), '')).toBe('exact');
    expect(t2.match('h', '/users/x', 'GET', req(), '')).toBeUndefined();
  });

  it('reaches a regex route beside a catch-all prefix: /, which still answers what the regex does not match', () => {
    const t2 = table([
      { name: 'catch-all', match: { path: { prefix: '/' } }, cluster: 'c' },
      { name: 'users-prefix', match: { path: { prefix: '/users' } }, cluster: 'c' },
      { name: 'user-by-id', match: { path: { regex: '^/users/[0-9]+$' } }, cluster: 'c' },
    ]);
    expect(t2.match('h', '/users/42', 'GET', req(), '')).toBe('user-by-id');
    expect(t2.match('h', '/users/me', 'GET', req(), '')).toBe('users-prefix');
    expect(t2.match('h', '/other', 'GET', req(), '')).toBe('catch-all');
  });

  it('puts an exact path before a regex that also matches it, and regexes in config order', () => {
    const t2 = table([
      { name: 'catch-all', match: { path: { prefix: '/' } }, cluster: 'c' },
      { name: 'any-user', match: { path: { regex: '/users/.+' } }, cluster: 'c' },
      { name: 'user-by-id', match: { path: { regex: '/users/[0-9]+' } }, cluster: 'c' },
      { name: 'user-zero', match: { path: { exact: '/users/0' } }, cluster: 'c' },
    ]);
    expect(t2.match('h', '/users/0', 'GET', req(), '')).toBe('user-zero');
    expect(t2.match('h', '/users/7', 'GET', req(), '')).toBe('any-user');
  });

  it('falls from a regex whose method or header predicate fails to the longest prefix', () => {
    const t2 = table([
      { name: 'catch-all', match: { path: { prefix: '/' } }, cluster: 'c' },
      { name: 'user-write', match: { path: { regex: '/users/[0-9]+' }, methods: ['PUT'] }, cluster: 'c' },
    ]);
    expect(t2.match('h', '/users/7', 'PUT', req(), '')).toBe('user-write');
    expect(t2.match('h', '/users/7', 'GET', req(), '')).toBe('catch-all');
  });

  it('strips the port and lower-cases the host', () => {
    expect(hostOf('API.Example.com:8443')).toBe('api.example.com');
    expect(hostOf('[::1]:80')).toBe('[::1]');
    expect(hostOf('[::1]')).toBe('[::1]');
  });
});

describe('hosts a route table serves', () => {
  const t = table([
    { name: 'any', match: { path: { prefix: '/' } }, cluster: 'c' },
    { name: 'star', match: { hosts: ['*'], path: { prefix: '/' } }, cluster: 'c' },
    { name: 'exact', match: { hosts: ['API.example.com'], path: { prefix: '/' } }, cluster: 'c' },
    { name: 'wild', match: { hosts: ['*.apps.example.com'], path: { prefix: '/' } }, cluster: 'c' },
  ]);
  const rows: Array<[string, boolean]> = [
    ['api.example.com', true],
    ['a.apps.example.com', true],
    ['a.b.apps.example.com', true],
    ['apps.example.com', false],
    ['other.org', false],
  ];
  it.each(rows)('%s is served: %s (exact and wildcard hosts count, host-less and * routes do not)', (host, served) => {
    expect(t.servesHost(host)).toBe(served);
  });
});
