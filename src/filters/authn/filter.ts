import type { Logger } from 'pino';
import type { Filter, FilterResponse, FilterResult, RequestContext } from '../filter.js';
import { counter } from '../../observability/metrics.js';
import { ApiKeySet } from './api-key.js';
import { JwtProvider } from './jwt.js';

const failures = counter('meridian_authn_failures_total', 'Requests refused by authentication', ['route', 'reason']);

const UNAUTHENTICATED = (error?: string): FilterResponse => ({
  status: 401,
  code: 'unauthenticated',
  headers: { 'www-authenticate': error ? `Bearer realm="meridian", error="${error}"` : 'Bearer realm="meridian"' },
  body: 'unauthenticated\n',
});

/**
 * Authentication for a route naming providers in `auth: [...]`: the first provider whose credential
 * is present decides (a present but invalid credential is refused, it does not fall through to the
 * next provider). No credential at all is a 401 too. Reasons are logged and counted, never echoed.
 */
export function createAuthnFilter(route: string, providers: Array<JwtProvider | ApiKeySet>, logger: Logger): Filter {
  const missing = failures.labels(route, 'missing');
  const invalid = failures.labels(route, 'invalid');
  return {
    name: 'authn',
    onRequest(ctx: RequestContext): FilterResult | Promise<FilterResult> {
      for (const p of providers) {
        const credential = p.extract(ctx);
        if (credential === undefined) continue;
        if (p instanceof ApiKeySet) {
          if (p.accept(ctx, credential)) return undefined;
          invalid.inc();
          logger.info({ route, provider: p.name, requestId: ctx.requestId, reason: 'unknown api key' }, 'authentication failed');
          return UNAUTHENTICATED('invalid_token');
        }
        return p.verify(credential).then(
          (claims) => { p.accept(ctx, claims); return undefined; },
          (err: Error & { code?: string }) => {
            invalid.inc();
            logger.info({ route, provider: p.name, reason: err.code ?? err.message }, 'authentication failed');
            return UNAUTHENTICATED('invalid_token');
          },
        );
      }
      missing.inc();
      return UNAUTHENTICATED();
    },
  };
}
