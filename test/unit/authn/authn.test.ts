import { describe, it, expect, beforeAll } from 'vitest';
import { pino } from 'pino';
import { SignJWT, generateKeyPair, exportJWK, type CryptoKey, type JWK } from 'jose';
import { JwtProvider, effectiveAlgorithms, jwtFailureReason } from '../../../src/filters/authn/jwt.js';
import { ApiKeySet, hashApiKey } from '../../../src/filters/authn/api-key.js';
import { createAuthnFilter } from '../../../src/filters/authn/filter.js';
import { compileTokenSources } from '../../../src/filters/authn/token-source.js';
import { registry } from '../../../src/observability/metrics.js';
import { authConfig, ctx } from './helpers.js';

const log = pino({ level: 'silent' });
const ISS = 'https://issuer.unit';
let es: { privateKey: CryptoKey; publicKey: CryptoKey };
let jwk: JWK;
let n = 0;

beforeAll(async () => {
  es = await generateKeyPair('ES256');
  jwk = { ...(await exportJWK(es.publicKey)), kid: 'k1', alg: 'ES256' };
});

/** A provider over inline keys; `n` keeps each test's key-source cache entry distinct. */
function jwtProvider(extra: Record<string, unknown> = {}) {
  const { jwt } = authConfig({
    jwtProviders: [
      {
        name: `p${++n}`,
        issuer: ISS,
        audiences: ['api'],
        algorithms: ['ES256'],
        jwks: { keys: [{ ...jwk, x_test: n }] },
        ...extra,
      },
    ],
  });
  return new JwtProvider(jwt[0]);
}

function sign(claims: Record<string, unknown> = {}, o: { exp?: number | string } = {}) {
  return new SignJWT({ sub: 'alice', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer(ISS)
    .setAudience('api')
    .setExpirationTime(o.exp ?? '5m')
    .sign(es.privateKey);
}

const keySet = (extra: Record<string, unknown> = {}) =>
  new ApiKeySet(
    authConfig({
      apiKeys: [
        {
          name: 'partners',
          keys: [{ consumer: 'acme', sha256: hashApiKey('k-acme'), metadata: { tier: 'gold' } }],
          ...extra,
        },
      ],
    }).keys[0],
  );

function failures(provider: string, reason: string): number {
  const m = registry.getSingleMetric('meridian_authn_failures_total') as unknown as {
    hashMap: Record<string, { value: number; labels: Record<string, string> }>;
  };
  return Object.values(m.hashMap).find((v) => v.labels.provider === provider && v.labels.reason === reason)?.value ?? 0;
}

describe('token sources', () => {
  const get = compileTokenSources([
    { header: 'authorization', prefix: 'Bearer ' },
    { cookie: 'tok' },
    { query: 'access_token' },
  ]);
  const table: Array<[string, Partial<Parameters<typeof get>[0]>, string | undefined]> = [
    ['a bearer header', { headers: { authorization: 'Bearer abc' } }, 'abc'],
    ['a lower-case scheme', { headers: { authorization: 'bearer abc' } }, 'abc'],
    ['another scheme', { headers: { authorization: 'Basic abc' } }, undefined],
    ['an empty bearer', { headers: { authorization: 'Bearer ' } }, undefined],
    ['a cookie among others', { headers: { cookie: 'a=1; tok=xyz; b=2' } }, 'xyz'],
    ['a cookie whose name only ends with the name', { headers: { cookie: 'xtok=no' } }, undefined],
    ['a query parameter', { query: '?a=1&access_token=q%2Eq' }, 'q.q'],
    ['a query parameter whose name only ends with the name', { query: '?my_access_token=no' }, undefined],
    ['a malformed escape in the query', { query: '?access_token=%zz' }, undefined],
    ['nothing', {}, undefined],
  ];
  for (const [what, c, expected] of table)
    it(`reads ${what} as ${String(expected)}`, () => expect(get(ctx(c))).toBe(expected));

  it('prefers the first source present', () => {
    expect(get(ctx({ headers: { authorization: 'Bearer h', cookie: 'tok=c' }, query: '?access_token=q' }))).toBe('h');
  });
});

describe('JWT provider (inline keys)', () => {
  it('verifies a token, records claims, forwards claims as headers and strips the token header', async () => {
    const p = jwtProvider({ forwardClaims: { sub: 'x-user', 'org.id': 'x-org', roles: 'x-roles' } });
    const token = await sign({ org: { id: 42 }, roles: ['a', 'b'] });
    const c = ctx();
    p.accept(c, await p.verify(token));
    expect(c.claims?.sub).toBe('alice');
    expect(c.upstreamHeaders).toEqual(['x-user', 'alice', 'x-org', '42', 'x-roles', 'a,b']);
    expect(c.upstreamStrip).toEqual(['authorization']);
  });

  it('never forwards a claim that would inject a header', async () => {
    const p = jwtProvider({ forwardClaims: { sub: 'x-user' } });
    const c = ctx();
    p.accept(c, await p.verify(await sign({ sub: 'a\r\nx-admin: 1' })));
    expect(c.upstreamHeaders).toEqual([]);
  });

  it('keeps the token upstream with forwardToken', async () => {
    const p = jwtProvider({ forwardToken: true });
    const c = ctx();
    p.accept(c, await p.verify(await sign()));
    expect(c.upstreamStrip).toEqual([]);
  });

  it('answers a verified token from its cache until the token expires', async () => {
    const p = jwtProvider({ clockSkew: '0s' });
    const token = await sign({}, { exp: Math.floor(Date.now() / 1000) + 2 });
    expect(p.cached(token)).toBeUndefined();
    await p.verify(token);
    expect(p.cached(token)?.sub).toBe('alice');
    const later = Date.now() + 3000;
    const realNow = Date.now;
    Date.now = () => later;
    try {
      expect(p.cached(token)).toBeUndefined();
    } finally {
      Date.now = realNow;
    }
  });

  it('requires exp', async () => {
    const p = jwtProvider();
    const token = await new SignJWT({ sub: 'a' })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(ISS)
      .setAudience('api')
      .sign(es.privateKey);
    await expect(p.verify(token)).rejects.toSatisfy((e) => jwtFailureReason(e) === 'missing_exp');
  });

  it('drops HMAC algorithms unless the provider has inline oct keys', () => {
    // Validation refuses this combination; the runtime drop is the second line of defence.
    const valid = authConfig({
      jwtProviders: [{ name: 'r', issuer: ISS, algorithms: ['ES256'], jwks: { uri: 'https://issuer.unit/jwks' } }],
    }).jwt[0];
    const remote = { ...valid, algorithms: ['HS256', 'ES256'] as typeof valid.algorithms };
    expect(effectiveAlgorithms(remote)).toEqual(['ES256']);
    const oct = authConfig({
      jwtProviders: [
        {
          name: 'o',
          issuer: ISS,
          algorithms: ['HS256'],
          jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA' }] },
        },
      ],
    }).jwt[0];
    expect(effectiveAlgorithms(oct)).toEqual(['HS256']);
  });

  it('verifies HS256 with an inline oct key', async () => {
    const secret = new TextEncoder().encode('an-inline-hmac-secret-of-32-bytes!!');
    const { jwt } = authConfig({
      jwtProviders: [
        {
          name: 'hs',
          issuer: ISS,
          algorithms: ['HS256'],
          jwks: { keys: [{ kty: 'oct', k: Buffer.from(secret).toString('base64url') }] },
        },
      ],
    });
    const token = await new SignJWT({ sub: 'h' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(ISS)
      .setExpirationTime('1m')
      .sign(secret);
    expect((await new JwtProvider(jwt[0]).verify(token)).sub).toBe('h');
  });
});

describe('API keys', () => {
  it('maps a presented key to its consumer and metadata and strips the header', () => {
    const s = keySet();
    const c = ctx({ headers: { 'x-api-key': 'k-acme' } });
    expect(s.accept(c, s.extract(c)!)).toBe(true);
    expect([c.consumer, c.consumerMetadata, c.upstreamStrip]).toEqual(['acme', { tier: 'gold' }, ['x-api-key']]);
  });

  it('refuses an unknown key and leaves the request untouched', () => {
    const s = keySet();
    const c = ctx();
    expect(s.accept(c, 'k-acme ')).toBe(false);
    expect([c.consumer, c.upstreamStrip]).toEqual([undefined, []]);
  });

  it('loads more keys from a file', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(mkdtempSync(join(tmpdir(), 'meridian-keys-')), 'keys.json');
    writeFileSync(file, JSON.stringify([{ consumer: 'globex', sha256: hashApiKey('k-globex') }]));
    const s = keySet({ file, header: 'X-Partner-Key' });
    expect(s.size).toBe(2);
    const c = ctx({ headers: { 'x-partner-key': 'k-globex' } });
    expect(s.accept(c, s.extract(c)!)).toBe(true);
    expect(c.consumer).toBe('globex');
  });
});

describe('route authentication filter', () => {
  it('answers 401 without an error code when no credential is presented, and counts it', () => {
    const p = jwtProvider();
    const f = createAuthnFilter('r', [p, keySet()], log);
    const before = failures(`${p.name}|partners`, 'missing');
    expect(f.onRequest(ctx())).toEqual({
      status: 401,
      code: 'unauthenticated',
      headers: { 'www-authenticate': 'Bearer realm="meridian"' },
      body: 'unauthenticated\n',
    });
    expect(failures(`${p.name}|partners`, 'missing')).toBe(before + 1);
  });

  it('answers 401 invalid_token with a generic body for a bad token, counting the reason per provider', async () => {
    const p = jwtProvider();
    const f = createAuthnFilter('r', [p], log);
    const expired = await sign({}, { exp: Math.floor(Date.now() / 1000) - 3600 });
    const r = await f.onRequest(ctx({ headers: { authorization: `Bearer ${expired}` } }));
    expect(r).toEqual({
      status: 401,
      code: 'unauthenticated',
      headers: { 'www-authenticate': 'Bearer realm="meridian", error="invalid_token"' },
      body: 'unauthenticated\n',
    });
    expect(failures(p.name, 'expired')).toBe(1);
  });

  it('authenticates when any one provider succeeds, even after another refused its credential', async () => {
    const p = jwtProvider();
    const f = createAuthnFilter('r', [p, keySet()], log);
    const c = ctx({ headers: { authorization: 'Bearer not.a.jwt', 'x-api-key': 'k-acme' } });
    expect(await f.onRequest(c)).toBeUndefined();
    expect(c.consumer).toBe('acme');
    expect(failures(p.name, 'malformed')).toBe(1);
  });

  it('uses an ApiKey challenge on routes with API keys only', () => {
    const r = createAuthnFilter('r', [keySet()], log).onRequest(ctx({ headers: { 'x-api-key': 'nope' } }));
    expect(r).toMatchObject({
      status: 401,
      headers: { 'www-authenticate': 'ApiKey realm="meridian", error="invalid_token"' },
    });
  });

  it('lets a request without a token through when the provider is optional, but still refuses a bad one', async () => {
    const f = createAuthnFilter('r', [jwtProvider({ required: false })], log);
    const c = ctx();
    expect(f.onRequest(c)).toBeUndefined();
    expect(c.claims).toBeUndefined();
    expect(await f.onRequest(ctx({ headers: { authorization: 'Bearer x.y.z' } }))).toMatchObject({ status: 401 });
  });

  it('answers a repeated token synchronously from the verified-token cache', async () => {
    const f = createAuthnFilter('r', [jwtProvider()], log);
    const headers = { authorization: `Bearer ${await sign()}` };
    const first = f.onRequest(ctx({ headers }));
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toBeUndefined();
    const c = ctx({ headers });
    expect(f.onRequest(c)).toBeUndefined();
    expect(c.claims?.sub).toBe('alice');
  });
});
