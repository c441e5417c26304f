import { readFileSync } from 'node:fs';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  importJWK,
  errors,
  type CryptoKey,
  type JSONWebKeySet,
  type JWK,
  type JWTVerifyGetKey,
} from 'jose';

const { JWKSNoMatchingKey } = errors;
import type { JwtProviderConfig } from '../../config/schema/auth.js';
import { msOf } from '../../config/duration.js';
import { counter } from '../../observability/metrics.js';
import { logger } from '../../observability/logger.js';

const fetches = counter('meridian_jwks_fetches_total', 'JWKS HTTP fetches by outcome', ['provider', 'result']);

/** Longest pause after a failed JWKS fetch before the next attempt (bounded by the cooldown). */
const MAX_FAILURE_BACKOFF_MS = 1000;
/** Key sources kept for reuse by later snapshots (least recently acquired evicted first). */
const MAX_SHARED_SOURCES = 64;

/** Where a provider's verification keys come from. */
export interface KeySource {
  /** jose key resolver for jwtVerify. */
  readonly getKey: JWTVerifyGetKey;
  /** Bumped whenever the key set may have changed; verified-token caches compare it. */
  generation(): number;
}

type RemoteJwks = ReturnType<typeof createRemoteJWKSet>;

/**
 * A remote JWKS on jose's RemoteJWKSet, served stale-while-revalidate: jose never expires the cache
 * itself (cacheMaxAge Infinity) so an outage cannot fail tokens signed by cached keys; after
 * `cacheDuration` the next request triggers one background refresh. An unknown `kid` makes jose
 * refetch at most once per `cooldown` (concurrent misses share the one fetch). After a failed fetch
 * further fetches wait min(cooldown, 1s), so a stream of unknown kids during an outage costs no
 * more than one fetch a second. Time is wall-clock Date.now(), as jose's own.
 */
export class RemoteKeySource implements KeySource {
  readonly getKey: JWTVerifyGetKey;
  readonly #provider: string;
  readonly #remote: RemoteJwks;
  readonly #refreshMs: number;
  readonly #backoffMs: number;
  #lastSuccess = Number.NEGATIVE_INFINITY;
  #lastFailure = Number.NEGATIVE_INFINITY;
  #generation = 0;
  #refreshing = false;

  constructor(provider: string, uri: string, o: { cacheMs: number; cooldownMs: number; timeoutMs: number }) {
    this.#provider = provider;
    this.#refreshMs = o.cacheMs;
    this.#backoffMs = Math.min(o.cooldownMs, MAX_FAILURE_BACKOFF_MS);
    this.#remote = createRemoteJWKSet(new URL(uri), {
      cacheMaxAge: Number.POSITIVE_INFINITY,
      cooldownDuration: o.cooldownMs,
      timeoutDuration: o.timeoutMs,
      [customFetch]: (url: string, init: RequestInit) => this.#fetch(url, init),
    });
    this.getKey = (header, token) => {
      this.#maybeRefresh();
      return this.#remote(header, token);
    };
  }

  generation(): number {
    return this.#generation;
  }

  /** Fetch wrapper: failure backoff, metrics, and the generation bump on a fresh key set. */
  async #fetch(url: string, init: RequestInit): Promise<Response> {
    if (Date.now() - this.#lastFailure < this.#backoffMs) {
      fetches.labels(this.#provider, 'backoff').inc();
      throw new Error('JWKS fetch skipped: backing off after a failure');
    }
    try {
      const res = await fetch(url, init);
      if (res.status !== 200) throw new Error(`JWKS endpoint answered ${res.status}`);
      this.#lastSuccess = Date.now();
      this.#generation++;
      fetches.labels(this.#provider, 'ok').inc();
      return res;
    } catch (err) {
      this.#lastFailure = Date.now();
      fetches.labels(this.#provider, 'error').inc();
      logger.warn({ provider: this.#provider, err: (err as Error).message }, 'JWKS fetch failed; keeping cached keys');
      throw err;
    }
  }

  #maybeRefresh(): void {
    if (this.#refreshing || !Number.isFinite(this.#lastSuccess)) return;
    const now = Date.now();
    if (now - this.#lastSuccess < this.#refreshMs || now - this.#lastFailure < this.#backoffMs) return;
    this.#refreshing = true;
    this.#remote
      .reload()
      .catch(() => undefined)
      .finally(() => {
        this.#refreshing = false;
      });
  }
}

/**
 * Inline keys or a JWKS file: read once; the key set never changes (generation 0). jose's JWKS
 * resolver only handles asymmetric keys, so inline `oct` keys (HS*) are resolved here: by `kid`, or
 * the single oct key when the token names none, imported once per algorithm.
 */
class LocalKeySource implements KeySource {
  readonly getKey: JWTVerifyGetKey;
  readonly #secrets = new Map<string, Promise<CryptoKey | Uint8Array>>();

  constructor(jwks: JSONWebKeySet) {
    const oct = jwks.keys.filter((k) => k.kty === 'oct');
    const asymmetric = jwks.keys.filter((k) => k.kty !== 'oct');
    const local = asymmetric.length ? createLocalJWKSet({ keys: asymmetric }) : undefined;
    this.getKey = (header, token) => {
      if (header.alg?.startsWith('HS')) return this.#secret(oct, header.alg, header.kid);
      if (!local) throw new JWKSNoMatchingKey();
      return local(header, token);
    };
  }

  #secret(oct: JWK[], alg: string, kid: string | undefined): Promise<CryptoKey | Uint8Array> {
    const matches = oct.filter(
      (k) => (kid === undefined ? true : k.kid === kid) && (k.alg === undefined || k.alg === alg),
    );
    if (matches.length !== 1) return Promise.reject(new JWKSNoMatchingKey());
    const id = `${alg}:${oct.indexOf(matches[0])}`;
    let key = this.#secrets.get(id);
    if (!key) this.#secrets.set(id, (key = importJWK(matches[0], alg)));
    return key;
  }

  generation(): number {
    return 0;
  }
}

const shared = new Map<string, KeySource>();

/**
 * The key source for a provider, reused across config snapshots while its `jwks` settings (and, for
 * a file, its content) are unchanged: a reload keeps jose's cached keys and imported CryptoKeys, so
 * it neither refetches nor re-imports. Evicting an entry only stops sharing; holders keep working.
 */
export function keySourceFor(p: JwtProviderConfig): KeySource {
  const jwks = p.jwks;
  const fileText = 'file' in jwks ? readFileSync(jwks.file, 'utf8') : undefined;
  const cacheKey = 'file' in jwks ? `file:${jwks.file}:${fileText}` : JSON.stringify(jwks);
  const hit = shared.get(cacheKey);
  if (hit) {
    shared.delete(cacheKey); // re-insert: Map order doubles as recency
    shared.set(cacheKey, hit);
    return hit;
  }
  const source = createKeySource(p, fileText);
  shared.set(cacheKey, source);
  if (shared.size > MAX_SHARED_SOURCES) shared.delete(shared.keys().next().value!);
  return source;
}

function createKeySource(p: JwtProviderConfig, fileText: string | undefined): KeySource {
  const jwks = p.jwks;
  if ('uri' in jwks) {
    const ms = msOf(jwks);
    return new RemoteKeySource(p.name, jwks.uri, {
      cacheMs: ms.cacheDuration,
      cooldownMs: ms.cooldown,
      timeoutMs: ms.timeout,
    });
  }
  const set = 'keys' in jwks ? { keys: jwks.keys } : (JSON.parse(fileText!) as JSONWebKeySet);
  return new LocalKeySource(set as JSONWebKeySet);
}

/** True when a provider's keys include symmetric (`oct`) keys: only then may HS* algorithms be used. */
export function hasSymmetricKeys(p: JwtProviderConfig): boolean {
  return 'keys' in p.jwks && p.jwks.keys.some((k) => k.kty === 'oct');
}
