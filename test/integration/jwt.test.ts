import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach, vi } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, generateKeyPair, exportJWK, exportSPKI, type CryptoKey, type JWK } from 'jose';
import { JwtProvider, jwtFailureReason } from '../../src/filters/authn/jwt.js';
import { validateConfig } from '../../src/config/validate.js';
import type { JwtProviderConfig } from '../../src/config/schema/auth.js';

const ISS = 'https://issuer.test';
type Pair = { privateKey: CryptoKey; publicKey: CryptoKey };

/** A real JWKS endpoint on port 0 that counts its hits; `fail` makes it drop connections. */
class JwksServer {
  hits = 0;
  fail = false;
  keys: JWK[] = [];
  readonly server = http.createServer((_req, res) => {
    this.hits++;
    if (this.fail) return void res.socket?.destroy();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: this.keys }));
  });
  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return this;
  }
  /** A distinct URL per provider, so providers do not share a cached key source. */
  url(name: string): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/${name}/jwks.json`;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

let es1: Pair, es2: Pair, rs1: Pair;
let jwkEs1: JWK, jwkEs2: JWK, jwkRs1: JWK;
let jwks: JwksServer;
let seq = 0;

beforeAll(async () => {
  [es1, es2, rs1] = await Promise.all([generateKeyPair('ES256'), generateKeyPair('ES256'), generateKeyPair('RS256')]);
  jwkEs1 = { ...(await exportJWK(es1.publicKey)), kid: 'es1', alg: 'ES256', use: 'sig' };
  jwkEs2 = { ...(await exportJWK(es2.publicKey)), kid: 'es2', alg: 'ES256', use: 'sig' };
  jwkRs1 = { ...(await exportJWK(rs1.publicKey)), kid: 'rs1', alg: 'RS256', use: 'sig' };
  jwks = await new JwksServer().start();
  jwks.keys = [jwkEs1, jwkRs1];
});
afterAll(() => jwks?.stop());

function providerConfig(
  o: { uri?: string; cacheDuration?: string; cooldown?: string; algorithms?: string[] } = {},
): JwtProviderConfig {
  const r = validateConfig(
    {
      auth: {
        jwtProviders: [
          {
            name: 'main',
            issuer: ISS,
            audiences: ['api'],
            algorithms: o.algorithms ?? ['ES256', 'RS256'],
            jwks: {
              uri: o.uri ?? jwks.url(`p${++seq}`),
              cacheDuration: o.cacheDuration ?? '10m',
              cooldown: o.cooldown ?? '30s',
              timeout: '2s',
            },
          },
        ],
      },
    },
    {},
  );
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config.auth.jwtProviders[0];
}

interface TokenOpts {
  key?: CryptoKey | Uint8Array;
  header?: Record<string, unknown>;
  aud?: string;
  iss?: string;
  exp?: number;
  nbf?: number;
  sub?: string;
  crit?: Record<string, boolean>;
}
function token(o: TokenOpts = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const t = new SignJWT({ roles: ['user'] })
    .setProtectedHeader({ alg: 'ES256', kid: 'es1', ...o.header } as { alg: string })
    .setIssuer(o.iss ?? ISS)
    .setAudience(o.aud ?? 'api')
    .setSubject(o.sub ?? 'alice')
    .setIssuedAt(now)
    .setExpirationTime(o.exp ?? now + 300);
  if (o.nbf !== undefined) t.setNotBefore(o.nbf);
  return t.sign(o.key ?? es1.privateKey, o.crit ? { crit: o.crit } : undefined);
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const reason = (p: Promise<unknown>) => p.then(() => 'accepted', jwtFailureReason);

describe('JWT verification against a live JWKS endpoint', () => {
  it('accepts valid ES256 and RS256 tokens, fetching the key set once', async () => {
    const before = jwks.hits;
    const p = new JwtProvider(providerConfig());
    expect((await p.verify(await token())).sub).toBe('alice');
    expect(
      (await p.verify(await token({ key: rs1.privateKey, header: { alg: 'RS256', kid: 'rs1' }, sub: 'bob' }))).sub,
    ).toBe('bob');
    expect(jwks.hits - before).toBe(1);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const refused: Array<[string, () => Promise<string>, string]> = [
    ['an expired token', () => token({ exp: now() - 120 }), 'expired'],
    ['a token whose nbf is in the future', () => token({ nbf: now() + 600 }), 'not_yet_valid'],
    ['a wrong audience', () => token({ aud: 'other' }), 'bad_audience'],
    ['a wrong issuer', () => token({ iss: 'https://evil.test' }), 'bad_issuer'],
    [
      'alg none',
      async () =>
        `${b64({ alg: 'none', kid: 'es1' })}.${b64({ iss: ISS, aud: 'api', sub: 'mallory', exp: now() + 300 })}.`,
      'alg_not_allowed',
    ],
    [
      'HS256 signed with the RSA public key PEM (algorithm confusion)',
      async () =>
        token({ key: new TextEncoder().encode(await exportSPKI(rs1.publicKey)), header: { alg: 'HS256', kid: 'rs1' } }),
      'alg_not_allowed',
    ],
    [
      'a tampered payload',
      async () => {
        const [h, , s] = (await token()).split('.');
        return `${h}.${b64({ iss: ISS, aud: 'api', sub: 'root', exp: now() + 300 })}.${s}`;
      },
      'bad_signature',
    ],
    [
      'an unknown critical header parameter',
      () => token({ header: { crit: ['x-must'], 'x-must': true }, crit: { 'x-must': true } }),
      'unsupported',
    ],
    ['garbage', async () => 'not-a-jwt', 'malformed'],
  ];
  for (const [what, make, expected] of refused) {
    it(`refuses ${what} (${expected})`, async () => {
      const p = new JwtProvider(providerConfig());
      expect(await reason(p.verify(await make()))).toBe(expected);
    });
  }

  it('refuses HS256 even when a misconfigured provider lists it next to a remote key set', async () => {
    // Validation refuses this combination; the provider must still refuse HS256 if it ever got one.
    const cfg = providerConfig({ algorithms: ['RS256'] });
    const p = new JwtProvider({ ...cfg, algorithms: ['RS256', 'HS256'] });
    const forged = await token({
      key: new TextEncoder().encode(await exportSPKI(rs1.publicKey)),
      header: { alg: 'HS256', kid: 'rs1' },
    });
    expect(await reason(p.verify(forged))).toBe('alg_not_allowed');
  });

  it('ignores jku and embedded jwk headers: keys come only from the configured set', async () => {
    const attacker = await new JwksServer().start();
    try {
      const evil = await generateKeyPair('ES256');
      attacker.keys = [{ ...(await exportJWK(evil.publicKey)), kid: 'evil', alg: 'ES256' }];
      const p = new JwtProvider(providerConfig());
      const viaJku = await token({ key: evil.privateKey, header: { kid: 'evil', jku: attacker.url('x') } });
      const viaJwk = await token({ key: evil.privateKey, header: { kid: 'es1', jwk: attacker.keys[0] } });
      expect(await reason(p.verify(viaJku))).toBe('unknown_kid');
      expect(await reason(p.verify(viaJwk))).toBe('bad_signature');
      expect(attacker.hits).toBe(0);
    } finally {
      await attacker.stop();
    }
  });
});

describe('JWKS caching, rotation and outages', () => {
  // The JWKS cache, cooldown and failure backoff (and jose's own cooldown) read Date.now(): only Date
  // is faked, so time is moved by vi.advanceTimersByTime while sockets and real timers run as usual.
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('refetches exactly once for an unknown kid under 20 concurrent verifications, then accepts the rotated key', async () => {
    const server = await new JwksServer().start();
    try {
      server.keys = [jwkEs1];
      const p = new JwtProvider(providerConfig({ uri: server.url('rot'), cooldown: '100ms' }));
      await p.verify(await token());
      expect(server.hits).toBe(1);
      server.keys = [jwkEs1, jwkEs2];
      vi.advanceTimersByTime(150); // past the cooldown, an unknown kid may refetch
      const t = await token({ key: es2.privateKey, header: { kid: 'es2' }, sub: 'rotated' });
      const results = await Promise.all(Array.from({ length: 20 }, () => reason(p.verify(t))));
      expect(results).toEqual(Array(20).fill('accepted'));
      expect(server.hits).toBe(2);
    } finally {
      await server.stop();
    }
  });

  it('refetches once for 20 concurrent tokens with a kid nobody knows, and not again within the cooldown', async () => {
    const server = await new JwksServer().start();
    try {
      server.keys = [jwkEs1];
      const p = new JwtProvider(providerConfig({ uri: server.url('ghost'), cooldown: '30s' }));
      await p.verify(await token()); // hit 1; the cooldown now runs from this fetch
      const ghost = await token({ key: es2.privateKey, header: { kid: 'ghost' } });
      expect(await Promise.all(Array.from({ length: 20 }, () => reason(p.verify(ghost))))).toEqual(
        Array(20).fill('unknown_kid'),
      );
      expect(server.hits).toBe(1); // inside the cooldown: no refetch at all
      const p2 = new JwtProvider(providerConfig({ uri: server.url('ghost2'), cooldown: '100ms' }));
      await p2.verify(await token()); // hit 2
      vi.advanceTimersByTime(150);
      expect(await Promise.all(Array.from({ length: 20 }, () => reason(p2.verify(ghost))))).toEqual(
        Array(20).fill('unknown_kid'),
      );
      expect(server.hits).toBe(3); // exactly one refetch for the 20
    } finally {
      await server.stop();
    }
  });

  it('drops a removed key once the rotation refetch lands, even for a token verified before', async () => {
    const server = await new JwksServer().start();
    try {
      server.keys = [jwkEs1];
      const p = new JwtProvider(providerConfig({ uri: server.url('drop'), cooldown: '100ms' }));
      const old = await token({ sub: 'old' });
      await p.verify(old);
      expect(p.cached(old)?.sub).toBe('old');
      server.keys = [jwkEs2]; // es1 retired at the issuer
      vi.advanceTimersByTime(150);
      expect(await reason(p.verify(await token({ key: es2.privateKey, header: { kid: 'es2' } })))).toBe('accepted');
      expect(p.cached(old)).toBeUndefined(); // the key set changed: the cached verdict is void
      expect(await reason(p.verify(old))).toBe('unknown_kid');
    } finally {
      await server.stop();
    }
  });

  it('keeps verifying with cached keys after the JWKS server is stopped, past the cache duration', async () => {
    const server = await new JwksServer().start();
    server.keys = [jwkEs1];
    const p = new JwtProvider(providerConfig({ uri: server.url('down'), cacheDuration: '100ms', cooldown: '100ms' }));
    await p.verify(await token());
    await server.stop();
    vi.advanceTimersByTime(200); // cache duration and cooldown both elapsed: refreshes will be tried and fail
    for (let i = 0; i < 5; i++) {
      expect(await reason(p.verify(await token({ sub: `u${i}` })))).toBe('accepted');
      vi.advanceTimersByTime(20);
    }
    // A key the cache never held fails closed.
    expect(await reason(p.verify(await token({ key: es2.privateKey, header: { kid: 'es2' } })))).toMatch(
      /^(jwks_unavailable|unknown_kid)$/,
    );
  });

  it('bounds fetches while the endpoint fails: a burst of unknown kids costs one attempt', async () => {
    const server = await new JwksServer().start();
    try {
      server.keys = [jwkEs1];
      // backoff after a failure = min(cooldown, 1s) = 400ms: the three rounds below fit well inside it
      const p = new JwtProvider(providerConfig({ uri: server.url('flaky'), cooldown: '400ms' }));
      await p.verify(await token());
      server.fail = true;
      vi.advanceTimersByTime(450);
      const ghost = await token({ key: es2.privateKey, header: { kid: 'ghost' } });
      for (let round = 0; round < 3; round++) {
        const results = await Promise.all(Array.from({ length: 20 }, () => reason(p.verify(ghost))));
        expect(results.every((r) => r === 'jwks_unavailable' || r === 'unknown_kid')).toBe(true);
      }
      expect(server.hits).toBe(2); // the initial fetch + one failed attempt, then backoff
      expect(await reason(p.verify(await token({ sub: 'still-fine' })))).toBe('accepted');
    } finally {
      await server.stop();
    }
  });

  it('reuses the key set across config snapshots: an unchanged provider does not refetch', async () => {
    const server = await new JwksServer().start();
    try {
      server.keys = [jwkEs1];
      const cfg = providerConfig({ uri: server.url('snap') });
      await new JwtProvider(cfg).verify(await token());
      const next = new JwtProvider(structuredClone(cfg)); // the next snapshot's provider
      expect(await reason(next.verify(await token({ sub: 'again' })))).toBe('accepted');
      expect(server.hits).toBe(1);
      const changed = new JwtProvider(providerConfig({ uri: server.url('snap'), cooldown: '10s' }));
      expect(await reason(changed.verify(await token()))).toBe('accepted');
      expect(server.hits).toBe(2); // different jwks settings: its own key set
    } finally {
      await server.stop();
    }
  });
});
