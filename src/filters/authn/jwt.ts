import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Static } from '@sinclair/typebox';
import type { JwtProviderSchema } from '../../config/schema/auth.js';
import { parseDuration } from '../../config/duration.js';
import type { RequestContext } from '../filter.js';
import { compileTokenSources } from './token-source.js';

export type JwtProviderConfig = Static<typeof JwtProviderSchema>;

const keySets = new Map<string, JWTVerifyGetKey>();
const MAX_CACHED_TOKENS = 10_000;

/**
 * Key set of a provider, shared across snapshots while its `jwks` settings are unchanged, so a config
 * reload neither refetches keys nor loses jose's cache (rotation: an unknown `kid` triggers one refetch,
 * limited by the cooldown; a JWKS outage keeps the cached keys working).
 */
function keySetFor(p: JwtProviderConfig): JWTVerifyGetKey {
  const key = JSON.stringify(p.jwks);
  let set = keySets.get(key);
  if (set) return set;
  const j = p.jwks;
  if ('uri' in j) {
    set = createRemoteJWKSet(new URL(j.uri), {
      cacheMaxAge: parseDuration(j.cacheDuration),
      cooldownDuration: parseDuration(j.cooldown),
      timeoutDuration: parseDuration(j.timeout),
    });
  } else {
    const keys = 'keys' in j ? j.keys : (JSON.parse(readFileSync(j.file, 'utf8')) as { keys: unknown[] }).keys;
    set = createLocalJWKSet({ keys: keys as never });
  }
  keySets.set(key, set);
  return set;
}

/** Why a JWT was refused; logged and counted, never sent to the client. */
export type JwtFailure = 'missing' | 'invalid';

/**
 * A JWT provider compiled once per snapshot: token extraction, jose verification against the
 * algorithm allow-list, issuer, audiences, exp (required) and nbf with clock skew. Verified tokens
 * are cached until they expire, so a client reusing its token pays for one signature check.
 */
export class JwtProvider {
  readonly name: string;
  readonly config: JwtProviderConfig;
  readonly extract: (ctx: RequestContext) => string | undefined;
  readonly #keys: JWTVerifyGetKey;
  readonly #skewSec: number;
  readonly #verified = new Map<string, JWTPayload>();
  readonly #forward: Array<[string, string]>;

  constructor(p: JwtProviderConfig) {
    this.name = p.name;
    this.config = p;
    this.extract = compileTokenSources(p.from);
    this.#keys = keySetFor(p);
    this.#skewSec = Math.round(parseDuration(p.clockSkew) / 1000);
    this.#forward = Object.entries(p.forwardClaims).map(([claim, header]) => [claim, header.toLowerCase()]);
  }

  /** Verify a token; resolves to its claims or rejects with jose's error. */
  async verify(token: string): Promise<JWTPayload> {
    const cached = this.#verified.get(token);
    const now = Date.now() / 1000;
    if (cached && (cached.exp ?? 0) + this.#skewSec > now && (cached.nbf ?? 0) - this.#skewSec <= now) return cached;
    const { payload } = await jwtVerify(token, this.#keys, {
      issuer: this.config.issuer,
      audience: this.config.audiences,
      algorithms: this.config.algorithms,
      clockTolerance: this.#skewSec,
      requiredClaims: ['exp'],
    });
    if (this.#verified.size >= MAX_CACHED_TOKENS) this.#verified.delete(this.#verified.keys().next().value!);
    this.#verified.set(token, payload);
    return payload;
  }

  /** Record the verified claims on the request and forward the configured ones as headers. */
  accept(ctx: RequestContext, claims: JWTPayload): void {
    ctx.claims = claims as Record<string, unknown>;
    for (const [claim, header] of this.#forward) {
      const v = claims[claim];
      if (v !== undefined) ctx.upstreamHeaders.push(header, typeof v === 'string' ? v : JSON.stringify(v));
    }
    if (!this.config.forwardToken) for (const s of this.config.from) if ('header' in s) ctx.upstreamStrip.push(s.header.toLowerCase());
  }
}
