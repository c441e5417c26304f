import type { RouteConfig } from '../config/schema/index.js';
import { compilePredicate, type HeaderSource, type Predicate } from './predicates.js';

interface Entry<T> {
  readonly order: number;
  readonly predicate: Predicate | undefined;
  readonly payload: T;
}

interface PrefixEntry<T> extends Entry<T> {
  readonly prefix: string;
}

interface RegexEntry<T> extends Entry<T> {
  readonly regex: RegExp;
}

/**
 * Routes of one host bucket, split by path match kind for precedence: exact, then regexes in config
 * order, then the longest prefix (nginx's location order without `^~`). A regex is checked before the
 * prefixes so that a catch-all `prefix: /` cannot hide it; a regex is the narrower intent, and the
 * prefixes are the fallback. Each list is in its final order once sealed: a request walks arrays.
 */
class PathTable<T> {
  readonly exact = new Map<string, Entry<T>[]>();
  readonly prefixes: PrefixEntry<T>[] = [];
  readonly regexes: RegexEntry<T>[] = [];

  add(route: RouteConfig, entry: Entry<T>) {
    const path = route.match.path;
    if (path?.exact !== undefined) {
      const list = this.exact.get(path.exact) ?? [];
      list.push(entry);
      this.exact.set(path.exact, list);
    } else if (path?.regex !== undefined) {
      this.regexes.push({ ...entry, regex: new RegExp(`^(?:${path.regex})$`) });
    } else {
      this.prefixes.push({ ...entry, prefix: path?.prefix ?? '/' });
    }
  }

  /** Longest prefix first; config order breaks ties (sort is stable). */
  seal() {
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length || a.order - b.order);
  }

  match(path: string, method: string, headers: HeaderSource, query: string): T | undefined {
    const exact = this.exact.get(path);
    if (exact) for (const e of exact) if (!e.predicate || e.predicate(method, headers, query)) return e.payload;
    for (const e of this.regexes)
      if (e.regex.test(path) && (!e.predicate || e.predicate(method, headers, query))) return e.payload;
    for (const e of this.prefixes)
      if (path.startsWith(e.prefix) && (!e.predicate || e.predicate(method, headers, query))) return e.payload;
    return undefined;
  }
}

/**
 * The compiled route table of one listener. Host precedence: exact host, then the longest matching
 * `*.suffix` wildcard, then routes without hosts (or with "*"). Unlike Envoy's virtual hosts, a request
 * whose host bucket has no matching path falls through to the next bucket (documented in docs/config.md).
 */
export class RouteTable<T> {
  readonly #exactHosts = new Map<string, PathTable<T>>();
  readonly #wildcards: Array<{ suffix: string; table: PathTable<T> }> = [];
  readonly #anyHost = new PathTable<T>();

  constructor(routes: ReadonlyArray<{ config: RouteConfig; payload: T }>) {
    routes.forEach(({ config, payload }, order) => {
      const entry = { order, predicate: compilePredicate(config.match), payload };
      const hosts = config.match.hosts;
      if (!hosts?.length || hosts.includes('*')) this.#anyHost.add(config, entry);
      for (const host of hosts ?? []) if (host !== '*') this.#tableFor(host.toLowerCase()).add(config, entry);
    });
    this.#wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
    for (const t of this.#exactHosts.values()) t.seal();
    for (const w of this.#wildcards) w.table.seal();
    this.#anyHost.seal();
  }

  #tableFor(host: string): PathTable<T> {
    if (host.startsWith('*.')) {
      const suffix = host.slice(1);
      let w = this.#wildcards.find((x) => x.suffix === suffix);
      if (!w) this.#wildcards.push((w = { suffix, table: new PathTable<T>() }));
      return w.table;
    }
    let t = this.#exactHosts.get(host);
    if (!t) this.#exactHosts.set(host, (t = new PathTable<T>()));
    return t;
  }

  /** Find the route for a request. `host` is lower-case without port. */
  match(host: string, path: string, method: string, headers: HeaderSource, query: string): T | undefined {
    const exact = this.#exactHosts.get(host);
    if (exact) {
      const r = exact.match(path, method, headers, query);
      if (r !== undefined) return r;
    }
    for (const w of this.#wildcards) {
      if (wildcardCovers(w.suffix, host)) {
        const r = w.table.match(path, method, headers, query);
        if (r !== undefined) return r;
      }
    }
    return this.#anyHost.match(path, method, headers, query);
  }

  /**
   * Does a route name `host` (lower-case, without port), exactly or by a `*.suffix` wildcard, as
   * `match` finds host buckets? Host-less and `*` routes do not count: they serve any host, so they
   * say nothing about which hosts are this table's own (an absolute-form target's authority is
   * accepted only for those).
   */
  servesHost(host: string): boolean {
    if (this.#exactHosts.has(host)) return true;
    for (const w of this.#wildcards) if (wildcardCovers(w.suffix, host)) return true;
    return false;
  }
}

/** `*.example.com` (suffix ".example.com") covers "a.example.com" and "a.b.example.com", not "example.com". */
function wildcardCovers(suffix: string, host: string): boolean {
  return host.length > suffix.length && host.endsWith(suffix);
}

/** Lower-case host of an authority, without the port ("Example.com:8080" -> "example.com", "[::1]:80" -> "[::1]"). */
export function hostOf(authority: string): string {
  let end = authority.length;
  const colon = authority.lastIndexOf(':');
  if (colon !== -1 && authority.indexOf(']', colon) === -1) end = colon;
  const host = end === authority.length ? authority : authority.slice(0, end);
  return host.toLowerCase();
}
