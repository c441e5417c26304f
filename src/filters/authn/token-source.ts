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

/** Names of the cookies a source list reads (removed from the upstream Cookie header unless forwarded). */
export function tokenCookies(sources: readonly TokenSource[]): string[] {
  return sources.flatMap((s) => ('cookie' in s ? [s.cookie] : []));
}

/** Names of the query parameters a source list reads (removed from the upstream query unless forwarded). */
export function tokenQueryParams(sources: readonly TokenSource[]): string[] {
  return sources.flatMap((s) => ('query' in s ? [s.query] : []));
}

/**
 * A Cookie header value without the named cookies (matched as the cookie getter matches them: by
 * exact name, case-sensitive); the value itself when none is present, '' when nothing is left.
 */
export function withoutCookies(header: string, names: readonly string[]): string {
  if (!names.some((n) => header.includes(`${n}=`))) return header;
  let out = '';
  for (const part of header.split(';')) {
    const pair = part.trim();
    const eq = pair.indexOf('=');
    if (pair === '' || names.includes(eq === -1 ? pair : pair.slice(0, eq))) continue;
    out = out === '' ? pair : `${out}; ${pair}`;
  }
  return out;
}

/**
 * A raw query ("?a=1&b=2" or "") without the named parameters (every occurrence, matched by raw
 * name as the query getter matches them); the query itself when none is present.
 */
export function withoutQueryParams(query: string, names: readonly string[]): string {
  if (!names.some((n) => query.includes(`${n}=`))) return query;
  let out = '';
  for (const part of query.slice(1).split('&')) {
    const eq = part.indexOf('=');
    if (names.includes(eq === -1 ? part : part.slice(0, eq))) continue;
    out += out === '' ? `?${part}` : `&${part}`;
  }
  return out;
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
