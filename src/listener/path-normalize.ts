/** Options of path normalization (gateway.mergeSlashes; escaped slashes are always refused). */
export interface NormalizeOptions {
  mergeSlashes?: boolean;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * Canonical form of a request path, computed before routing and RBAC so that every layer judges and
 * forwards the same path: percent-encoded unreserved characters are decoded (`%61` -> `a`), `.` and
 * `..` segments removed (RFC 3986 5.2.4), repeated slashes merged. Returns null (400) for `%00`,
 * encoded slashes or backslashes (`%2F`, `%5C`), malformed escapes and a `..` above the root.
 * Fast path: a path without '%', '//' or '/.' is returned as is, without allocating.
 */
export function normalizePath(path: string, opts: NormalizeOptions = {}): string | null {
  if (path.indexOf('%') === -1 && path.indexOf('/.') === -1 && path.indexOf('//') === -1 && path.indexOf('\\') === -1) return path;
  const decoded = decodeUnreserved(path);
  if (decoded === null) return null;
  const merged = opts.mergeSlashes === false ? decoded : decoded.replace(/\/{2,}/g, '/');
  return removeDotSegments(merged);
}

function decodeUnreserved(path: string): string | null {
  if (path.includes('\\')) return null;
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const c = path[i];
    if (c !== '%') { out += c; continue; }
    const hex = path.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return null;
    const ch = String.fromCharCode(parseInt(hex, 16));
    if (ch === '\0' || ch === '/' || ch === '\\') return null;
    out += UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
    i += 2;
  }
  return out;
}

function removeDotSegments(path: string): string | null {
  const out: string[] = [];
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i];
    if (s === '.') { if (i === segments.length - 1) out.push(''); continue; }
    if (s === '..') {
      if (out.length === 0) return null;
      out.pop();
      if (i === segments.length - 1) out.push('');
      continue;
    }
    out.push(s);
  }
  return `/${out.join('/')}`;
}
