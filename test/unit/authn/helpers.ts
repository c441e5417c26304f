import { validateConfig } from '../../../src/config/validate.js';
import type { RequestContext } from '../../../src/filters/filter.js';
import type { JwtProviderConfig, ApiKeySetConfig } from '../../../src/config/schema/auth.js';

/** Auth config through the real validator (defaults applied, frozen). */
export function authConfig(auth: Record<string, unknown>): { jwt: JwtProviderConfig[]; keys: ApiKeySetConfig[] } {
  const r = validateConfig({ auth }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return { jwt: r.config.auth.jwtProviders, keys: r.config.auth.apiKeys };
}

/** A request context as the proxy builds it. */
export function ctx(o: Partial<RequestContext> = {}): RequestContext {
  return {
    method: 'GET',
    path: '/x',
    query: '',
    authority: 'h',
    headers: {},
    clientIp: '127.0.0.1',
    peer: undefined,
    routeName: 'r',
    requestId: 'req-1',
    upstreamHeaders: [],
    upstreamStrip: [],
    responseHeaders: [],
    ...o,
  };
}
