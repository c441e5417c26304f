import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import http from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { SignJWT, generateKeyPair, exportJWK, type JWK, type KeyLike } from 'jose';
import { request } from 'undici';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

const ISS = 'https://issuer.test';
let gw: InProcessGateway;
let up: TestUpstream;
let jwks: http.Server;
let jwksHits = 0;
let jwksUp = true;
let keys: JWK[] = [];
let es: { privateKey: KeyLike; publicKey: KeyLike };
let rs: { privateKey: KeyLike; publicKey: KeyLike };

async function token(
  o: {
    key?: KeyLike;
    alg?: string;
    kid?: string;
    aud?: string;
    iss?: string;
    exp?: number;
    nbf?: number;
    sub?: string;
    roles?: string[];
  } = {},
) {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ roles: o.roles ?? ['user'] })
    .setProtectedHeader({ alg: o.alg ?? 'ES256', kid: o.kid ?? 'es1' })
    .setIssuer(o.iss ?? ISS)
    .setAudience(o.aud ?? 'api')
    .setSubject(o.sub ?? 'alice')
    .setIssuedAt(now)
    .setExpirationTime(o.exp ?? now + 300);
  if (o.nbf) jwt.setNotBefore(o.nbf);
  return jwt.sign(o.key ?? es.privateKey);
}

beforeAll(async () => {
  es = await generateKeyPair('ES256');
  rs = await generateKeyPair('RS256');
  keys = [
    { ...(await exportJWK(es.publicKey)), kid: 'es1', alg: 'ES256' },
    { ...(await exportJWK(rs.publicKey)), kid: 'rs1', alg: 'RS256' },
  ];
  jwks = http.createServer((_req, res) => {
    jwksHits++;
    if (!jwksUp) return void res.socket?.destroy();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys }));
  });
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
  up = await startUpstream((req, res) =>
    res.end(
      JSON.stringify({
        user: req.headers['x-user-id'] ?? null,
        auth: req.headers.authorization ?? null,
        key: req.headers['x-api-key'] ?? null,
      }),
    ),
  );
  gw = await startInProcess(
    baseConfig({
      auth: {
        jwtProviders: [
          {
            name: 'main',
            issuer: ISS,
            audiences: ['api'],
            algorithms: ['ES256', 'RS256'],
            jwks: { uri: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`, cooldown: '200ms' },
            forwardClaims: { sub: 'x-user-id' },
          },
          {
            name: 'web',
            issuer: ISS,
            audiences: ['api'],
            algorithms: ['ES256'],
            jwks: { uri: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`, cooldown: '200ms' },
            from: [{ cookie: 'session' }, { query: 'access_token' }],
            forwardClaims: { sub: 'x-user-id' },
          },
        ],
        apiKeys: [
          {
            name: 'partners',
            header: 'x-api-key',
            keys: [{ consumer: 'acme', sha256: createHash('sha256').update('secret-key-1').digest('hex') }],
          },
        ],
      },
      rbac: [
        {
          name: 'admins',
          rules: [
            {
              action: 'allow',
              principals: [{ claim: { name: 'roles', contains: 'admin' } }],
              permissions: [{ paths: ['/admin/*'] }],
            },
          ],
        },
      ],
      routes: [
        { name: 'admin', match: { path: { prefix: '/admin' } }, cluster: 'up', auth: ['main'], rbac: 'admins' },
        { name: 'api', match: { path: { prefix: '/api' } }, cluster: 'up', auth: ['main', 'partners'] },
        { name: 'web', match: { path: { prefix: '/web' } }, cluster: 'up', auth: ['web'] },
        { name: 'open', match: { path: { prefix: '/' } }, cluster: 'up' },
      ],
      clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  await up?.close();
  jwks?.close();
});

async function call(path: string, headers: Record<string, string> = {}) {
  const r = await request(`${gw.url}${path}`, { headers });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe('JWT authentication', () => {
  it('accepts a valid token, forwards the sub claim and strips the token', async () => {
    const r = await call('/api/x', bearer(await token()));
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ user: 'alice', auth: null, key: null });
  });

  it('accepts RS256 from the same key set', async () => {
    expect((await call('/api/x', bearer(await token({ key: rs.privateKey, alg: 'RS256', kid: 'rs1' })))).status).toBe(
      200,
    );
  });

  const refused: Array<[string, () => Promise<string>]> = [
    ['an expired token', () => token({ exp: Math.floor(Date.now() / 1000) - 120 })],
    ['a not-yet-valid token', () => token({ nbf: Math.floor(Date.now() / 1000) + 600 })],
    ['a wrong audience', () => token({ aud: 'other' })],
    ['a wrong issuer', () => token({ iss: 'https://evil.test' })],
    [
      'alg none',
      async () =>
        `${Buffer.from(JSON.stringify({ alg: 'none', kid: 'es1' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: ISS, aud: 'api', sub: 'mallory', exp: Math.floor(Date.now() / 1000) + 300 })).toString('base64url')}.`,
    ],
    [
      'HS256 signed with the RSA public key (algorithm confusion)',
      async () => {
        const pem = Buffer.from(JSON.stringify(keys[1]));
        return new SignJWT({ sub: 'mallory' })
          .setProtectedHeader({ alg: 'HS256', kid: 'rs1' })
          .setIssuer(ISS)
          .setAudience('api')
          .setExpirationTime('5m')
          .sign(new Uint8Array(pem));
      },
    ],
    [
      'a tampered payload',
      async () => {
        const [h, , s] = (await token()).split('.');
        return `${h}.${Buffer.from(JSON.stringify({ iss: ISS, aud: 'api', sub: 'root', exp: 9999999999 })).toString('base64url')}.${s}`;
      },
    ],
  ];
  for (const [what, make] of refused) {
    it(`refuses ${what} with 401 and forwards nothing`, async () => {
      const before = up.requests.length;
      const r = await call('/api/x', bearer(await make()));
      expect(r.status).toBe(401);
      expect(r.headers['www-authenticate']).toBe('Bearer realm="meridian", error="invalid_token"');
      expect(r.body).toBe('unauthenticated\n');
      expect(up.requests.length).toBe(before);
    });
  }

  it('refuses a request without credentials', async () => {
    const r = await call('/api/x');
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Bearer realm="meridian"');
  });

  it('strips a spoofed claim header on routes without auth', async () => {
    const r = await call('/open', { 'x-user-id': 'admin' });
    expect(JSON.parse(r.body).user).toBeNull();
  });

  it('refetches the JWKS once for an unknown kid under 20 concurrent requests, then accepts the rotated key', async () => {
    const next = await generateKeyPair('ES256');
    keys = [...keys, { ...(await exportJWK(next.publicKey)), kid: 'es2', alg: 'ES256' }];
    // Past the refetch cooldown (200 ms here), an unknown kid may trigger a refetch. The cooldown (the
    // gateway's and jose's) reads Date.now(), and this gateway runs in this process: only Date is faked
    // and moved on, while sockets and real timers run as usual.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.advanceTimersByTime(250);
      const before = jwksHits;
      const t = await token({ key: next.privateKey, kid: 'es2' });
      const results = await Promise.all(Array.from({ length: 20 }, () => call('/api/x', bearer(t))));
      expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
      expect(jwksHits - before).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps accepting tokens signed by cached keys while the JWKS server is down', async () => {
    jwksUp = false;
    try {
      const r = await call('/api/x', bearer(await token({ sub: 'bob' })));
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).user).toBe('bob');
    } finally {
      jwksUp = true;
    }
  });
});

describe('tokens from cookies and query parameters', () => {
  it('removes a token read from a cookie from the forwarded Cookie header, keeping the other cookies', async () => {
    const t = await token({ sub: 'carol' });
    const r = await call('/web/x', { cookie: `theme=dark; session=${t}; xsession=keep; lang=en` });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).user).toBe('carol');
    const seen = up.requests.at(-1)!;
    expect(seen.headers.cookie).toBe('theme=dark; xsession=keep; lang=en');
    expect(JSON.stringify(seen.rawHeaders)).not.toContain(t);
  });

  it('drops the Cookie header when the token was its only cookie', async () => {
    const r = await call('/web/x', { cookie: `session=${await token()}` });
    expect(r.status).toBe(200);
    expect(up.requests.at(-1)!.headers.cookie).toBeUndefined();
  });

  it('removes a token read from a query parameter from the forwarded query, keeping the other parameters', async () => {
    const t = await token({ sub: 'dave' });
    const r = await call(`/web/x?a=1&access_token=${t}&b=2&access_token_hint=keep`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).user).toBe('dave');
    expect(up.requests.at(-1)!.url).toBe('/web/x?a=1&b=2&access_token_hint=keep');
    const only = await call(`/web/y?access_token=${t}`);
    expect(only.status).toBe(200);
    expect(up.requests.at(-1)!.url).toBe('/web/y');
  });

  it('refuses a bad cookie token with 401 and forwards nothing', async () => {
    const before = up.requests.length;
    expect((await call('/web/x', { cookie: 'session=not.a.jwt' })).status).toBe(401);
    expect(up.requests.length).toBe(before);
  });
});

describe('API keys and RBAC', () => {
  it('accepts a known API key and strips it', async () => {
    const r = await call('/api/x', { 'x-api-key': 'secret-key-1' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).key).toBeNull();
  });

  it('refuses an unknown API key', async () => {
    expect((await call('/api/x', { 'x-api-key': 'guess' })).status).toBe(401);
  });

  it('lets an admin role reach /admin and forbids others with 403', async () => {
    expect((await call('/admin/panel', bearer(await token({ roles: ['admin'] })))).status).toBe(200);
    expect((await call('/admin/panel', bearer(await token({ roles: ['user'] })))).status).toBe(403);
  });

  it('judges the normalized path: /admin/../api is not an /admin bypass and /%61dmin is /admin', async () => {
    expect((await call('/%61dmin/panel', bearer(await token({ roles: ['user'] })))).status).toBe(403);
    const r = await call('/admin/../api/x', bearer(await token({ roles: ['user'] })));
    expect(r.status).toBe(200);
    expect(up.requests.at(-1)!.url).toBe('/api/x');
  });
});

describe('refused requests in the metrics', () => {
  const counts = async () => {
    const text = await (await request(`${gw.admin}/metrics`)).body.text();
    const n = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
    return {
      api4xx: n(/meridian_downstream_rq_total\{route="api",status_class="4xx"\} (\d+)/),
      admin4xx: n(/meridian_downstream_rq_total\{route="admin",status_class="4xx"\} (\d+)/),
      unauthenticated: n(/meridian_downstream_errors_total\{code="unauthenticated"\} (\d+)/),
      forbidden: n(/meridian_downstream_errors_total\{code="forbidden"\} (\d+)/),
    };
  };

  it('counts 401 and 403 per route and per error code like any other response', async () => {
    const before = await counts();
    expect((await call('/api/x')).status).toBe(401);
    expect((await call('/api/x', { 'x-api-key': 'guess' })).status).toBe(401);
    expect((await call('/admin/panel', bearer(await token({ roles: ['user'] })))).status).toBe(403);
    expect(await counts()).toEqual({
      api4xx: before.api4xx + 2,
      admin4xx: before.admin4xx + 1,
      unauthenticated: before.unauthenticated + 2,
      forbidden: before.forbidden + 1,
    });
  });
});
