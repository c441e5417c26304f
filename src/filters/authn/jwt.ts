import { jwtVerify, type JWTPayload, type JWTVerifyOptions } from 'jose';
import { HMAC_ALGORITHMS, type JwtProviderConfig } from '../../config/schema/auth.js';
import { msOf } from '../../config/duration.js';
import { logger } from '../../observability/logger.js';
import type { RequestContext } from '../filter.js';
import { compileTokenSources, tokenCookies, tokenHeaders, tokenQueryParams } from './token-source.js';
import { hasSymmetricKeys, keySourceFor, type KeySource } from './jwks.js';

export type { JwtProviderConfig } from '../../config/schema/auth.js';

/** Verified tokens remembered per provider (FIFO eviction); only tokens that verified are stored. */
const MAX_CACHED_TOKENS = 10_000;

interface CachedToken {
  claims: JWTPayload;
  exp: number;
  nbf: number;
  generation: number;
}

/**
 * A JWT provider compiled once per snapshot (RFC 8725): a fixed algorithm allow-list (HS* only with
 * inline `oct` keys, so an RSA public key can never be used as an HMAC secret), `iss`, `aud`, `exp`
 * (required) and `nbf` with clock skew; `kid` only selects a key from the provider's own JWKS
 * (`jku`, `x5u`, `jwk` headers are ignored) and unknown `crit` parameters are rejected (jose).
 * Tokens that verified are cached until they expire or the key set changes, so a client reusing
 * its token pays for one signature check.
 */
export class JwtProvider {
  readonly name: string;
  /** false: a request without a token may pass (an invalid token is still refused). */
  readonly required: boolean;
  readonly extract: (ctx: RequestContext) => string | undefined;
  readonly #keys: KeySource;
  readonly #options: JWTVerifyOptions;
  readonly #skewSec: number;
  readonly #strip: readonly string[];
  /** Cookies and query parameters the token may come from: removed upstream like the headers (undefined: none). */
  readonly #stripCookies: readonly string[] | undefined;
  readonly #stripQuery: readonly string[] | undefined;
  readonly #forward: ReadonlyArray<readonly [claim: string, path: readonly string[], header: string]>;
  readonly #tokens = new Map<string, CachedToken>();

  constructor(p: JwtProviderConfig) {
    this.name = p.name;
    this.required = p.required;
    this.extract = compileTokenSources(p.from);
    this.#keys = keySourceFor(p);
    this.#skewSec = Math.ceil(msOf(p).clockSkew / 1000);
    const algorithms = effectiveAlgorithms(p);
    this.#options = Object.freeze({
      issuer: p.issuer,
      audience: p.audiences,
      algorithms,
      clockTolerance: this.#skewSec,
      requiredClaims: ['exp'],
    });
    this.#strip = p.forwardToken ? [] : tokenHeaders(p.from);
    this.#stripCookies = p.forwardToken ? undefined : nonEmpty(tokenCookies(p.from));
    this.#stripQuery = p.forwardToken ? undefined : nonEmpty(tokenQueryParams(p.from));
    this.#forward = Object.entries(p.forwardClaims).map(
      ([claim, header]) => [claim, claim.split('.'), header.toLowerCase()] as const,
    );
  }

  /** Claims of a token verified earlier and still valid now, without a signature check; else undefined. */
  cached(token: string): JWTPayload | undefined {
    const c = this.#tokens.get(token);
    if (!c) return undefined;
    const now = Date.now() / 1000;
    if (c.generation === this.#keys.generation() && now < c.exp + this.#skewSec && now >= c.nbf - this.#skewSec)
      return c.claims;
    this.#tokens.delete(token);
    return undefined;
  }

  /** Verify a token; resolves to its claims or rejects with jose's error (see {@link jwtFailureReason}). */
  async verify(token: string): Promise<JWTPayload> {
    const { payload } = await jwtVerify(token, this.#keys.getKey, this.#options);
    if (this.#tokens.size >= MAX_CACHED_TOKENS) this.#tokens.delete(this.#tokens.keys().next().value!);
    // Read after verifying: the first verification itself may have fetched the key set.
    this.#tokens.set(token, {
      claims: payload,
      exp: payload.exp!,
      nbf: payload.nbf ?? 0,
      generation: this.#keys.generation(),
    });
    return payload;
  }

  /** Record verified claims on the request, forward configured claims as headers, drop the token (header, cookie, query parameter). */
  accept(ctx: RequestContext, claims: JWTPayload): void {
    ctx.claims = claims as Record<string, unknown>;
    for (const [claim, path, header] of this.#forward) {
      const v = headerValue(claimValue(claims, claim, path));
      if (v !== undefined) ctx.upstreamHeaders.push(header, v);
    }
    for (const h of this.#strip) ctx.upstreamStrip.push(h);
    if (this.#stripCookies) ctx.upstreamStripCookies = concat(ctx.upstreamStripCookies, this.#stripCookies);
    if (this.#stripQuery) ctx.upstreamStripQuery = concat(ctx.upstreamStripQuery, this.#stripQuery);
  }
}

function nonEmpty(list: readonly string[]): readonly string[] | undefined {
  return list.length ? Object.freeze(list) : undefined;
}

/** The provider's frozen list itself when nothing was recorded before (no allocation per request). */
function concat(prev: readonly string[] | undefined, add: readonly string[]): readonly string[] {
  return prev ? [...prev, ...add] : add;
}

/**
 * The configured algorithms minus those the keys cannot safely back: HS* are dropped unless the
 * provider has inline `oct` keys (a JWKS URI or file publishes keys; HMAC with them is forgery).
 */
export function effectiveAlgorithms(p: JwtProviderConfig): string[] {
  const symmetric = hasSymmetricKeys(p);
  const algs = p.algorithms.filter((a) => symmetric || !(HMAC_ALGORITHMS as readonly string[]).includes(a));
  if (algs.length < p.algorithms.length)
    logger.warn({ provider: p.name }, 'HMAC algorithms ignored: the provider has no inline oct keys');
  return algs;
}

/** A claim by exact name first ("https://x/roles"), else by dotted path ("realm_access.roles"). */
export function claimValue(claims: Record<string, unknown>, name: string, path: readonly string[]): unknown {
  if (name in claims) return claims[name];
  let v: unknown = claims;
  for (const part of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

const HEADER_SAFE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** True when a value can go into a header as is: no CR, LF, NUL or other control bytes. */
export function isHeaderSafe(s: string): boolean {
  return HEADER_SAFE.test(s);
}

/** A claim as a header value: strings as is, numbers/booleans as text, arrays comma-joined, objects as JSON; never CR/LF. */
function headerValue(v: unknown): string | undefined {
  let s: string;
  if (typeof v === 'string') s = v;
  else if (typeof v === 'number' || typeof v === 'boolean') s = String(v);
  else if (Array.isArray(v)) s = v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(',');
  else if (v !== null && typeof v === 'object') s = JSON.stringify(v);
  else return undefined;
  return isHeaderSafe(s) ? s : undefined; // a claim must not be able to inject headers
}

/**
 * A short, metric-safe reason for a jose error. Logged and counted only: the client always gets the
 * same generic 401.
 */
export function jwtFailureReason(err: unknown): string {
  const e = err as { code?: string; claim?: string };
  switch (e.code) {
    case 'ERR_JWT_EXPIRED':
      return 'expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (e.claim === 'nbf') return 'not_yet_valid';
      if (e.claim === 'aud') return 'bad_audience';
      if (e.claim === 'iss') return 'bad_issuer';
      if (e.claim === 'exp') return 'missing_exp';
      return 'bad_claim';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'alg_not_allowed';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'bad_signature';
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'unknown_kid';
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return 'ambiguous_kid';
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return 'malformed';
    case 'ERR_JOSE_NOT_SUPPORTED':
      return 'unsupported';
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JOSE_GENERIC':
      return 'jwks_unavailable';
    default:
      return e.code ? 'invalid' : 'jwks_unavailable';
  }
}
