import type { Logger } from 'pino';
import type { Filter, FilterResponse, FilterResult, RequestContext } from '../filter.js';
import { counter } from '../../observability/metrics.js';
import { ApiKeySet } from './api-key.js';
import { JwtProvider, jwtFailureReason } from './jwt.js';

const failures = counter(
  'meridian_authn_failures_total',
  'Requests whose credential a provider refused, and requests without any',
  ['provider', 'reason'],
);

/** An authentication provider a route can name in `auth: [...]`. */
export type AuthProvider = JwtProvider | ApiKeySet;

const BODY = 'unauthenticated\n';

function refusal(challenge: string): FilterResponse {
  return Object.freeze({
    status: 401,
    code: 'unauthenticated' as const,
    headers: Object.freeze({ 'www-authenticate': challenge }),
    body: BODY,
  });
}

/**
 * Authentication for a route naming providers in `auth: [...]`. Every provider whose credential is
 * present is tried in order and the first that verifies authenticates the request (so a stale JWT
 * next to a valid API key still passes). A credential that fails is counted and logged with its
 * reason. If credentials were presented and none verified: 401 `error="invalid_token"`. If none were
 * presented: 401 without error (RFC 6750 3.1), unless some JWT provider on the route has
 * `required: false`, which lets the request through unauthenticated. The body is always generic.
 */
export function createAuthnFilter(route: string, providers: readonly AuthProvider[], logger: Logger): Filter {
  const scheme = providers.some((p) => p instanceof JwtProvider) ? 'Bearer' : 'ApiKey';
  const missing = refusal(`${scheme} realm="meridian"`);
  const invalid = refusal(`${scheme} realm="meridian", error="invalid_token"`);
  const optional = providers.some((p) => p instanceof JwtProvider && !p.required);
  const missingCount = failures.labels(providers.map((p) => p.name).join('|'), 'missing');
  const fail = (p: AuthProvider, reason: string, ctx: RequestContext) => {
    failures.labels(p.name, reason).inc();
    logger.info({ route, provider: p.name, reason, requestId: ctx.requestId }, 'authentication failed');
  };

  const attempt = (ctx: RequestContext, from: number, presented: boolean): FilterResult | Promise<FilterResult> => {
    for (let i = from; i < providers.length; i++) {
      const p = providers[i];
      const credential = p.extract(ctx);
      if (credential === undefined) continue;
      presented = true;
      if (p instanceof ApiKeySet) {
        if (p.accept(ctx, credential)) return undefined;
        fail(p, 'unknown_key', ctx);
        continue;
      }
      const hit = p.cached(credential);
      if (hit) {
        p.accept(ctx, hit);
        return undefined;
      }
      return p.verify(credential).then(
        (claims) => {
          p.accept(ctx, claims);
          return undefined;
        },
        (err: unknown) => {
          fail(p, jwtFailureReason(err), ctx);
          return attempt(ctx, i + 1, true);
        },
      );
    }
    if (presented) return invalid;
    if (optional) return undefined;
    missingCount.inc();
    return missing;
  };

  return { name: 'authn', onRequest: (ctx) => attempt(ctx, 0, false) };
}
