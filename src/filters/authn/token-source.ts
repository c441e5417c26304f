import type { RequestContext } from '../filter.js';

/** Where a provider reads its credential: a header (with optional prefix), a cookie or a query parameter. */
export type TokenSource = { header: string; prefix?: string } | { cookie: string } | { query: string };

type Getter = (ctx: RequestContext) => string | undefined;

/**
 * Compile token sources into one extractor, tried in order; the first source present wins.
 * Names are lower-cased and everything is decided here, so extraction allocates only the token.
 */
export function compileTokenSources(sources: readonly TokenSource[]): Getter {
  const getters = sources.map(compileOne);
  if (getters.length === 1) return getters[0];
  return (ctx) => {
    for (const g of getters) {
      const t = g(ctx);
      if (t !== undefined) return t;
    }
    return undefined;
  };
}

/** Lower-case names of the headers a source list reads (removed upstream unless forwarded). */
export function tokenHeaders(sources: readonly TokenSource[]): string[] {
  return sources.flatMap((s) => ('header' in s ? [s.header.toLowerCase()] : []));
}

function compileOne(s: TokenSource): Getter {
  if ('header' in s) return headerGetter(s.header.toLowerCase(), s.prefix ?? '');
  if ('cookie' in s) return cookieGetter(s.cookie);
  return queryGetter(s.query);
}

function headerGetter(name: string, prefix: string): Getter {
  return (ctx) => {
    const raw = ctx.headers[name];
    const v = Array.isArray(raw) ? raw[0] : raw;
    if (v === undefined || !startsWithIgnoreCase(v, prefix)) return undefined; // "bearer x" is "Bearer x" (RFC 7235)
    const token = v.slice(prefix.length).trim();
    return token === '' ? undefined : token;
  };
}

function startsWithIgnoreCase(v: string, prefix: string): boolean {
  if (v.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    const a = v.charCodeAt(i) | (isAsciiLetter(v.charCodeAt(i)) ? 0x20 : 0);
    const b = prefix.charCodeAt(i) | (isAsciiLetter(prefix.charCodeAt(i)) ? 0x20 : 0);
    if (a !== b) return false;
  }
  return true;
}

function isAsciiLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

function cookieGetter(cookie: string): Getter {
  const needle = `${cookie}=`;
  return (ctx) => {
    const c = ctx.headers.cookie;
    const header = Array.isArray(c) ? c.join('; ') : c;
    if (!header) return undefined;
    let at = header.indexOf(needle);
    // a match must start the header or follow "; " / ";" so "xtoken=" is not "token="
    while (at > 0 && header[at - 1] !== ';' && header[at - 1] !== ' ') at = header.indexOf(needle, at + 1);
    if (at === -1) return undefined;
    const end = header.indexOf(';', at);
    const v = header.slice(at + needle.length, end === -1 ? undefined : end).trim();
    return v === '' ? undefined : v;
  };
}

function queryGetter(param: string): Getter {
  const needle = `${param}=`;
  return (ctx) => {
    const q = ctx.query; // "?a=1&token=x" or ""
    let at = q.indexOf(needle);
    while (at > 0 && q[at - 1] !== '?' && q[at - 1] !== '&') at = q.indexOf(needle, at + 1);
    if (at === -1) return undefined;
    const end = q.indexOf('&', at);
    const raw = q.slice(at + needle.length, end === -1 ? undefined : end);
    try {
      const v = decodeURIComponent(raw.replace(/\+/g, ' '));
      return v === '' ? undefined : v;
    } catch {
      return undefined; // a malformed escape is no credential
    }
  };
}
