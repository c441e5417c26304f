import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../../src/config/validate.js';

const base = (): any => ({
  listeners: [{ name: 'main', address: '127.0.0.1:8080' }],
  routes: [{ name: 'r', match: { path: { prefix: '/' } }, cluster: 'c' }],
  clusters: [{ name: 'c', endpoints: [{ address: '127.0.0.1:9000' }] }],
});

function errorsOf(input: unknown) {
  const r = validateConfig(input, {});
  return r.ok ? [] : r.errors;
}

/** The message RegExp gives for `source` on this Node version. */
function regexError(source: string): string {
  try {
    new RegExp(source);
  } catch (e) {
    return `invalid regular expression: ${(e as Error).message}`;
  }
  throw new Error(`"${source}" is a valid regular expression`);
}

const dir = mkdtempSync(join(tmpdir(), 'meridian-refs-'));
const missing = (name: string) => join(dir, 'absent', name);
const existing = join(dir, 'present.pem');
writeFileSync(existing, 'not checked for content here\n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const policy = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  key: [{ source: 'clientIp' }],
  limit: { requests: 10, per: '1s' },
  ...extra,
});
const rbacPolicy = (name: string, principals: unknown[] = [{ any: true }]) => ({
  name,
  rules: [{ action: 'allow', principals }],
});

type Case = [string, (c: any) => void, string, string];

const cases: Case[] = [
  // unique names (routes are covered in validate.test.ts)
  ['a duplicate cluster name', (c) => c.clusters.push({ name: 'c' }), 'clusters[1].name', 'duplicate name "c"'],
  [
    'a duplicate listener name',
    (c) => c.listeners.push({ name: 'main', address: '127.0.0.1:8081' }),
    'listeners[1].name',
    'duplicate name "main"',
  ],
  [
    'a duplicate rbac policy name',
    (c) => (c.rbac = [rbacPolicy('p'), rbacPolicy('p')]),
    'rbac[1].name',
    'duplicate name "p"',
  ],
  [
    'a duplicate rate limit name',
    (c) => (c.rateLimits = [policy('rl'), policy('rl')]),
    'rateLimits[1].name',
    'duplicate name "rl"',
  ],

  // routes
  [
    'a weighted cluster that does not exist',
    (c) => {
      delete c.routes[0].cluster;
      c.routes[0].weightedClusters = [
        { cluster: 'c', weight: 1 },
        { cluster: 'nope', weight: 1 },
      ];
    },
    'routes[0].weightedClusters[1].cluster',
    'unknown cluster "nope"',
  ],
  [
    'weighted clusters whose weights are all zero',
    (c) => {
      delete c.routes[0].cluster;
      c.routes[0].weightedClusters = [{ cluster: 'c', weight: 0 }];
    },
    'routes[0].weightedClusters',
    'at least one weight must be positive',
  ],
  [
    'a route with cluster and redirect',
    (c) => (c.routes[0].redirect = { host: 'x.example' }),
    'routes[0]',
    'a route needs exactly one of cluster, weightedClusters, redirect, directResponse (found cluster, redirect)',
  ],
  [
    'a rewrite with path and pathPrefix',
    (c) => (c.routes[0].rewrite = { path: '/a', pathPrefix: '/b/' }),
    'routes[0].rewrite',
    'set rewrite.path (the whole path) or rewrite.pathPrefix (the matched part), not both',
  ],
  [
    'a retry with maxBodyBytes and its earlier name bufferBytes',
    (c) => (c.routes[0].retry = { maxBodyBytes: 10, bufferBytes: 10 }),
    'routes[0].retry',
    'set retry.maxBodyBytes (bufferBytes is its earlier name), not both',
  ],
  [
    'a redirect with path and pathPrefix',
    (c) => {
      delete c.routes[0].cluster;
      c.routes[0].redirect = { path: '/a', pathPrefix: '/b/' };
    },
    'routes[0].redirect',
    'set redirect.path (the whole path) or redirect.pathPrefix (the matched part), not both',
  ],
  [
    'a path match with prefix and exact',
    (c) => (c.routes[0].match.path = { prefix: '/', exact: '/x' }),
    'routes[0].match.path',
    'set only one of prefix, exact, regex',
  ],
  [
    'a path match with exact and regex',
    (c) => (c.routes[0].match.path = { exact: '/x', regex: '/x.*' }),
    'routes[0].match.path',
    'set only one of prefix, exact, regex',
  ],
  [
    'an invalid header match regex',
    (c) => (c.routes[0].match.headers = [{ name: 'x-a', regex: '[' }]),
    'routes[0].match.headers[0].regex',
    regexError('['),
  ],
  [
    'an invalid query match regex',
    (c) =>
      (c.routes[0].match.query = [
        { name: 'q', exact: '1' },
        { name: 'p', regex: 'a(' },
      ]),
    'routes[0].match.query[1].regex',
    regexError('a('),
  ],
  [
    'an unknown auth provider',
    (c) => {
      c.auth = { apiKeys: [{ name: 'keys' }] };
      c.routes[0].auth = ['keys', 'jwt'];
    },
    'routes[0].auth[1]',
    'unknown auth provider "jwt"',
  ],
  [
    'an unknown rate limit policy',
    (c) => {
      c.rateLimits = [policy('rl')];
      c.routes[0].rateLimits = ['rl', 'zz'];
    },
    'routes[0].rateLimits[1]',
    'unknown rate limit policy "zz"',
  ],

  // listeners
  [
    'requireClientCert without a ca',
    (c) => (c.listeners[0].tls = { requireClientCert: true }),
    'listeners[0].tls.ca',
    'requireClientCert needs a ca bundle (or tls.svid)',
  ],
  [
    'a listener cert without key',
    (c) => (c.listeners[0].tls = { cert: existing }),
    'listeners[0].tls',
    'cert and key must be given together',
  ],
  [
    'a listener key without cert',
    (c) => (c.listeners[0].tls = { key: existing }),
    'listeners[0].tls',
    'cert and key must be given together',
  ],
  [
    'https with only a cert',
    (c) => {
      c.listeners[0].protocol = 'https';
      c.listeners[0].tls = { cert: existing };
    },
    'listeners[0].tls',
    'https needs tls.cert and tls.key (or tls.certificates, or tls.svid)',
  ],

  // clusters
  [
    'an aggregate without members',
    (c) => c.clusters.push({ name: 'agg', kind: 'aggregate' }),
    'clusters[1].clusters',
    'an aggregate cluster lists its member clusters',
  ],
  [
    'an aggregate with an empty member list',
    (c) => c.clusters.push({ name: 'agg', kind: 'aggregate', clusters: [] }),
    'clusters[1].clusters',
    'an aggregate cluster lists its member clusters',
  ],
  [
    'an aggregate containing an aggregate',
    (c) =>
      c.clusters.push(
        { name: 'a1', kind: 'aggregate', clusters: ['c'] },
        { name: 'a2', kind: 'aggregate', clusters: ['c', 'a1'] },
      ),
    'clusters[2].clusters[1]',
    'an aggregate cluster cannot contain another aggregate',
  ],
  [
    'an aggregate with endpoints',
    (c) =>
      c.clusters.push({ name: 'agg', kind: 'aggregate', clusters: ['c'], endpoints: [{ address: '127.0.0.1:9001' }] }),
    'clusters[1].endpoints',
    'an aggregate cluster has no endpoints of its own',
  ],

  // DNS discovery
  [
    'discovery beside static endpoints',
    (c) => (c.clusters[0].discovery = { dns: { name: 'app.svc.test', port: 8080 } }),
    'clusters[0].discovery',
    'discovery and endpoints are alternatives: a discovered cluster takes its endpoints from discovery only',
  ],
  [
    'discovery on an aggregate',
    (c) =>
      c.clusters.push({
        name: 'agg',
        kind: 'aggregate',
        clusters: ['c'],
        discovery: { dns: { name: 'app.svc.test', port: 8080 } },
      }),
    'clusters[1].discovery',
    'an aggregate cluster has no endpoints of its own: set discovery on its member clusters',
  ],
  [
    'discovery without a source',
    (c) => c.clusters.push({ name: 'd', discovery: {} }),
    'clusters[1].discovery',
    'set dns or kubernetes',
  ],
  [
    'a DNS refresh of zero',
    (c) => c.clusters.push({ name: 'd', discovery: { dns: { name: 'app.svc.test', port: 8080, refresh: '0s' } } }),
    'clusters[1].discovery.dns.refresh',
    'refresh must be at least 1ms',
  ],
  [
    'an unknown DNS mode',
    (c) =>
      c.clusters.push({ name: 'd', discovery: { dns: { name: 'app.svc.test', port: 8080, mode: 'round_robin' } } }),
    'clusters[1].discovery.dns.mode',
    'expected strict or logical',
  ],
  [
    'a DNS name with a port',
    (c) => c.clusters.push({ name: 'd', discovery: { dns: { name: 'app.svc.test:80', port: 8080 } } }),
    'clusters[1].discovery.dns.name',
    'expected a DNS name',
  ],
  [
    'a DNS server that is a hostname',
    (c) => (c.gateway = { dns: { servers: ['127.0.0.1:53', 'dns.example:53'] } }),
    'gateway.dns.servers[1]',
    'expected ip, ip:port or [ipv6]:port',
  ],
  [
    'a DNS server with an IPv6 address and no brackets before the port',
    (c) => (c.gateway = { dns: { servers: ['fd00::1]:53'] } }),
    'gateway.dns.servers[0]',
    'expected ip, ip:port or [ipv6]:port',
  ],
  [
    'a DNS server with port 0',
    (c) => (c.gateway = { dns: { servers: ['10.96.0.10:0'] } }),
    'gateway.dns.servers[0]',
    'expected ip, ip:port or [ipv6]:port, got "10.96.0.10:0"',
  ],
  [
    'slow start with random',
    (c) => (c.clusters[0].lb = { policy: 'random', slowStart: { window: '30s' } }),
    'clusters[0].lb.slowStart',
    'slow start applies to round_robin and least_request only',
  ],
  [
    'slow start with ring_hash',
    (c) => (c.clusters[0].lb = { policy: 'ring_hash', slowStart: { window: '30s' } }),
    'clusters[0].lb.slowStart',
    'slow start applies to round_robin and least_request only',
  ],
  [
    'slow start with maglev',
    (c) => (c.clusters[0].lb = { policy: 'maglev', slowStart: { window: '30s' } }),
    'clusters[0].lb.slowStart',
    'slow start applies to round_robin and least_request only',
  ],
  [
    'a health check without http or tcp',
    (c) => (c.clusters[0].healthCheck = { interval: '2s' }),
    'clusters[0].healthCheck',
    'set http or tcp',
  ],
  [
    'an upstream TLS cert without key',
    (c) => (c.clusters[0].upstreamTls = { cert: existing }),
    'clusters[0].upstreamTls',
    'cert and key must be given together',
  ],
  [
    'an upstream TLS key without cert',
    (c) => (c.clusters[0].upstreamTls = { key: existing }),
    'clusters[0].upstreamTls',
    'cert and key must be given together',
  ],

  // auth and rbac (schema/auth.ts authConfigErrors)
  [
    'HMAC algorithms with a JWKS URI',
    (c) =>
      (c.auth = {
        jwtProviders: [
          {
            name: 'jwt',
            issuer: 'https://idp.example',
            algorithms: ['HS256', 'RS256', 'HS512'],
            jwks: { uri: 'https://idp.example/jwks' },
          },
        ],
      }),
    'auth.jwtProviders[0].algorithms',
    'HS256, HS512 needs inline oct keys; refusing HMAC with a published key set',
  ],
  [
    'HMAC algorithms with a JWKS file',
    (c) => (c.auth = { jwtProviders: [{ name: 'jwt', issuer: 'i', algorithms: ['HS384'], jwks: { file: existing } }] }),
    'auth.jwtProviders[0].algorithms',
    'HS384 needs inline oct keys; refusing HMAC with a published key set',
  ],
  [
    'an invalid sourceCidr',
    (c) => (c.rbac = [rbacPolicy('p', [{ any: true }, { sourceCidr: '10.0.0.0/33' }])]),
    'rbac[0].rules[0].principals[1].sourceCidr',
    'expected a CIDR such as 10.0.0.0/8 or fd00::/8',
  ],
  [
    'a sourceCidr that is not an address',
    (c) => (c.rbac = [rbacPolicy('p', [{ sourceCidr: 'office' }])]),
    'rbac[0].rules[0].principals[0].sourceCidr',
    'expected a CIDR such as 10.0.0.0/8 or fd00::/8',
  ],

  // files
  [
    'a missing JWKS file',
    (c) => (c.auth = { jwtProviders: [{ name: 'jwt', issuer: 'i', jwks: { file: missing('jwks.json') } }] }),
    'auth.jwtProviders[0].jwks.file',
    `file not found: ${missing('jwks.json')}`,
  ],
  [
    'a missing API key file',
    (c) => (c.auth = { apiKeys: [{ name: 'keys', file: missing('keys.json') }] }),
    'auth.apiKeys[0].file',
    `file not found: ${missing('keys.json')}`,
  ],
  [
    'a missing listener cert',
    (c) => (c.listeners[0].tls = { cert: missing('cert.pem'), key: existing }),
    'listeners[0].tls.cert',
    `file not found: ${missing('cert.pem')}`,
  ],
  [
    'a missing listener key',
    (c) => (c.listeners[0].tls = { cert: existing, key: missing('key.pem') }),
    'listeners[0].tls.key',
    `file not found: ${missing('key.pem')}`,
  ],
  [
    'a missing listener ca',
    (c) => (c.listeners[0].tls = { ca: missing('ca.pem') }),
    'listeners[0].tls.ca',
    `file not found: ${missing('ca.pem')}`,
  ],
  [
    'a missing SNI certificate file',
    (c) =>
      (c.listeners[0].tls = {
        cert: existing,
        key: existing,
        certificates: [{ serverNames: ['a.example'], cert: missing('a.pem'), key: existing }],
      }),
    'listeners[0].tls.certificates[0].cert',
    `file not found: ${missing('a.pem')}`,
  ],
  [
    'a missing upstream TLS ca',
    (c) => (c.clusters[0].upstreamTls = { ca: missing('up-ca.pem') }),
    'clusters[0].upstreamTls.ca',
    `file not found: ${missing('up-ca.pem')}`,
  ],
  [
    'a JWT provider and an API-key set with one name',
    (c) =>
      (c.auth = {
        jwtProviders: [{ name: 'p', issuer: 'i', jwks: { file: existing } }],
        apiKeys: [{ name: 'p', file: existing }],
      }),
    'auth.apiKeys[0].name',
    'duplicate name "p" (JWT providers and API-key sets share names)',
  ],

  // top level
  [
    'configStore together with managementServer',
    (c) => {
      c.configStore = { url: 'redis://127.0.0.1:6379' };
      c.managementServer = { url: 'https://hub.example:8443' };
    },
    'configStore',
    'configStore and managementServer are alternatives: replicas of a managed gateway get their config from the hub',
  ],
  [
    'a redis rate limit without a redis section',
    (c) => (c.rateLimits = [policy('local'), policy('shared', { store: 'redis' })]),
    'rateLimits[1].store',
    'store "redis" needs a top-level redis section',
  ],
];

// The same configs, made valid: the checks above must not fire on their fixed counterparts.
const accepted: Array<[string, (c: any) => void]> = [
  [
    'positive weighted clusters',
    (c) => {
      delete c.routes[0].cluster;
      c.routes[0].weightedClusters = [
        { cluster: 'c', weight: 0 },
        { cluster: 'c', weight: 1 },
      ];
    },
  ],
  [
    'known auth providers and rate limits',
    (c) => {
      c.auth = {
        apiKeys: [{ name: 'keys' }],
        jwtProviders: [
          { name: 'jwt', issuer: 'i', jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }, algorithms: ['HS256'] },
        ],
      };
      c.rateLimits = [policy('rl', { store: 'redis' })];
      c.redis = {};
      c.routes[0].auth = ['keys', 'jwt'];
      c.routes[0].rateLimits = ['rl'];
    },
  ],
  [
    'requireClientCert with an existing ca, cert and key',
    (c) => (c.listeners[0].tls = { cert: existing, key: existing, ca: existing, requireClientCert: true }),
  ],
  [
    'an aggregate of static clusters',
    (c) => c.clusters.push({ name: 'c2' }, { name: 'agg', kind: 'aggregate', clusters: ['c', 'c2'] }),
  ],
  [
    'slow start with least_request and a tcp health check',
    (c) => {
      c.clusters[0].lb = { policy: 'least_request', slowStart: { window: '30s' } };
      c.clusters[0].healthCheck = { tcp: {} };
    },
  ],
  [
    'valid IPv4 and IPv6 CIDRs',
    (c) =>
      (c.rbac = [
        rbacPolicy('p', [{ sourceCidr: '10.0.0.0/8' }, { sourceCidr: 'fd00::/8' }, { sourceCidr: '192.0.2.1' }]),
      ]),
  ],
  ['configStore alone', (c) => (c.configStore = { url: 'redis://127.0.0.1:6379' })],
  [
    'a DNS-discovered cluster and DNS servers in every accepted form',
    (c) => {
      c.clusters.push({
        name: 'app',
        discovery: { dns: { name: 'app.default.svc.cluster.local', port: 8080, refresh: '5s', mode: 'logical' } },
      });
      c.gateway = { dns: { servers: ['10.96.0.10:53', '10.96.0.11', '[::1]:53', '[fd00::53]', '::1'] } };
    },
  ],
  [
    'static endpoints named by hostname',
    (c) => (c.clusters[0].endpoints = [{ address: 'backend.internal:9000' }, { address: 'localhost:9001' }]),
  ],
];

describe('config reference checks', () => {
  it('accepts the base config', () => {
    expect(errorsOf(base())).toEqual([]);
  });

  for (const [what, mutate, path, message] of cases) {
    it(`reports ${what} at ${path}`, () => {
      const c = base();
      mutate(c);
      expect(errorsOf(c)).toContainEqual({ path, message });
    });
  }

  for (const [what, mutate] of accepted) {
    it(`accepts ${what}`, () => {
      const c = base();
      mutate(c);
      expect(errorsOf(c)).toEqual([]);
    });
  }
});
