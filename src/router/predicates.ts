import type { RouteConfig } from '../config/schema/index.js';

/** Anything with lazily built headers (node's IncomingMessage builds `headers` on first access). */
export interface HeaderSource {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** A compiled non-path condition of a route; all must hold for the route to match. */
export type Predicate = (method: string, src: HeaderSource, query: string) => boolean;

/** Compile header, method and query conditions once per snapshot into one predicate (or none). */
export function compilePredicate(match: RouteConfig['match']): Predicate | undefined {
  const parts: Predicate[] = [];
  if (match.methods?.length) {
    const methods = new Set(match.methods);
    parts.push((method) => methods.has(method));
  }
  for (const h of match.headers ?? []) parts.push(headerPredicate(h));
  for (const q of match.query ?? []) parts.push(queryPredicate(q));
  if (parts.length === 0) return undefined;
  if (parts.length === 1) return parts[0];
  return (m, h, q) => {
    for (let i = 0; i < parts.length; i++) if (!parts[i](m, h, q)) return false;
    return true;
  };
}

type HeaderMatch = NonNullable<RouteConfig['match']['headers']>[number];

function headerPredicate(h: HeaderMatch): Predicate {
  const name = h.name.toLowerCase();
  const test = valueTest(h);
  const invert = h.invert;
  return (_m, src) => {
    const raw = src.headers[name];
    const value = Array.isArray(raw) ? raw.join(',') : raw;
    return test(value) !== invert;
  };
}

function valueTest(h: {
  exact?: string;
  prefix?: string;
  regex?: string;
  present?: boolean;
}): (v: string | undefined) => boolean {
  if (h.exact !== undefined) return (v) => v === h.exact;
  const prefix = h.prefix;
  if (prefix !== undefined) return (v) => v?.startsWith(prefix) === true;
  if (h.regex !== undefined) {
    const re = new RegExp(`^(?:${h.regex})$`);
    return (v) => v !== undefined && re.test(v);
  }
  if (h.present === false) return (v) => v === undefined;
  return (v) => v !== undefined;
}

type QueryMatch = NonNullable<RouteConfig['match']['query']>[number];

function queryPredicate(q: QueryMatch): Predicate {
  const test = valueTest(q);
  return (_m, _h, query) => {
    const value = query.length > 1 ? (new URLSearchParams(query.slice(1)).get(q.name) ?? undefined) : undefined;
    return test(value);
  };
}
