import { describe, it, expect } from 'vitest';
import { validateConfig } from '../../../src/config/validate.js';
import { authConfigErrors, isCidr } from '../../../src/config/schema/auth.js';

const jwtProvider = (o: Record<string, unknown>) => ({
  auth: { jwtProviders: [{ name: 'main', issuer: 'https://i', jwks: { uri: 'https://i/jwks' }, ...o }] },
});
const errorsOf = (input: unknown) => {
  const r = validateConfig(input, {});
  return r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`);
};

describe('auth config schema', () => {
  it('fills JWT provider defaults: remote JWKS timings, skew, bearer header, required', () => {
    const r = validateConfig(jwtProvider({}), {});
    expect(r.ok && r.config.auth.jwtProviders[0]).toMatchObject({
      algorithms: ['RS256', 'ES256'],
      clockSkew: '30s',
      required: true,
      forwardToken: false,
      jwks: { uri: 'https://i/jwks', cacheDuration: '10m', cooldown: '30s', timeout: '5s' },
      from: [{ header: 'authorization', prefix: 'Bearer ' }],
    });
  });

  const refused: Array<[string, unknown, string]> = [
    ['alg none', jwtProvider({ algorithms: ['none'] }), 'auth.jwtProviders[0].algorithms[0]'],
    [
      'jwks with both uri and keys',
      jwtProvider({ jwks: { uri: 'https://i/j', keys: [{ kty: 'EC' }] } }),
      'auth.jwtProviders[0].jwks',
    ],
    ['an empty jwks', jwtProvider({ jwks: {} }), 'auth.jwtProviders[0].jwks'],
    [
      'a token source with header and cookie',
      jwtProvider({ from: [{ header: 'a', cookie: 'b' }] }),
      'auth.jwtProviders[0].from[0]',
    ],
    ['a bad duration', jwtProvider({ clockSkew: '30 seconds' }), 'auth.jwtProviders[0].clockSkew'],
    [
      'a non-hex API key digest',
      { auth: { apiKeys: [{ name: 'k', keys: [{ consumer: 'c', sha256: 'abc' }] }] } },
      'auth.apiKeys[0].keys[0].sha256',
    ],
    [
      'a principal with two kinds',
      { rbac: [{ name: 'p', rules: [{ action: 'allow', principals: [{ consumer: 'a', any: true }] }] }] },
      'rbac[0].rules[0].principals[0]',
    ],
    [
      'an empty principal',
      { rbac: [{ name: 'p', rules: [{ action: 'allow', principals: [{}] }] }] },
      'rbac[0].rules[0].principals[0]',
    ],
    [
      'a claim match with two operators',
      {
        rbac: [
          {
            name: 'p',
            rules: [{ action: 'allow', principals: [{ claim: { name: 'r', equals: 'a', contains: 'b' } }] }],
          },
        ],
      },
      'rbac[0].rules[0].principals[0].claim',
    ],
    [
      'a path glob not starting with /',
      { rbac: [{ name: 'p', rules: [{ action: 'allow', permissions: [{ paths: ['admin/*'] }] }] }] },
      'rbac[0].rules[0].permissions[0].paths[0]',
    ],
    ['a policy without rules', { rbac: [{ name: 'p', rules: [] }] }, 'rbac[0].rules'],
  ];
  for (const [what, input, path] of refused) {
    it(`refuses ${what} at ${path}`, () => expect(errorsOf(input).some((e) => e.startsWith(`${path}:`))).toBe(true));
  }

  it('accepts every principal kind and fills rule defaults', () => {
    const r = validateConfig(
      {
        rbac: [
          {
            name: 'p',
            rules: [
              { action: 'deny', principals: [{ sourceCidr: '10.0.0.0/8' }] },
              {
                action: 'allow',
                principals: [
                  { spiffeId: 'spiffe://td/*' },
                  { claim: { name: 'a.b', in: ['x'] } },
                  { consumer: 'acme' },
                  { authenticated: true },
                  { any: true },
                ],
                permissions: [{ methods: ['GET'], paths: ['/a/*'], headers: [{ name: 'x', present: true }] }],
              },
            ],
          },
        ],
      },
      {},
    );
    expect(r.ok).toBe(true);
    expect(r.ok && r.config.rbac[0].rules[0]).toMatchObject({ permissions: [{}] });
  });

  it('reports HMAC with a published key set and bad CIDRs as cross-field errors at validation', () => {
    const r = validateConfig(
      {
        ...jwtProvider({ algorithms: ['HS256', 'ES256'] }),
        rbac: [{ name: 'p', rules: [{ action: 'allow', principals: [{ sourceCidr: '10.0.0.0/33' }] }] }],
      },
      {},
    );
    expect(r.ok ? [] : r.errors.map((e) => e.path)).toEqual([
      'auth.jwtProviders[0].algorithms',
      'rbac[0].rules[0].principals[0].sourceCidr',
    ]);
    expect(typeof authConfigErrors).toBe('function');
  });

  it('recognizes CIDRs', () => {
    expect(['10.0.0.0/8', '1.2.3.4', 'fd00::/8', '::1', '::ffff:10.0.0.0/104'].every(isCidr)).toBe(true);
    expect(['10.0.0.0/33', '10.0.0/8', 'fd00::/129', 'x', '10.0.0.0/', '10.0.0.0/08x'].some(isCidr)).toBe(false);
  });
});
