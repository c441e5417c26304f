import type { RequestContext } from '../filter.js';

/** Where a provider reads its credential: a header (with optional prefix), a cookie or a query parameter. */
export interface TokenSource {
  header?: string;
  prefix?: string;
  cookie?: string;
  query?: string;
}

/** Compile token sources into one extractor (lower-cased names, compiled cookie regexes). */
export function compileTokenSources(sources: readonly TokenSource[]): (ctx: RequestContext) => string | undefined {
  const getters = sources.map((s): ((ctx: RequestContext) => string | undefined) => {
    if (s.header) {
      const name = s.header.toLowerCase();
      const prefix = s.prefix ?? '';
      return (ctx) => {
        const raw = ctx.headers[name];
        const v = Array.isArray(raw) ? raw[0] : raw;
        if (v === undefined || !v.startsWith(prefix)) return undefined;
        return v.slice(prefix.length).trim() || undefined;
      };
    }
    if (s.cookie) {
      const re = new RegExp(`(?:^|;\\s*)${s.cookie.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}=([^;]*)`);
      return (ctx) => {
        const c = ctx.headers.cookie;
        const m = typeof c === 'string' ? re.exec(c) : null;
        return m?.[1] || undefined;
      };
    }
    const q = s.query!;
    return (ctx) => (ctx.query.length > 1 ? new URLSearchParams(ctx.query.slice(1)).get(q) ?? undefined : undefined);
  });
  return (ctx) => {
    for (const g of getters) {
      const t = g(ctx);
      if (t !== undefined) return t;
    }
    return undefined;
  };
}
