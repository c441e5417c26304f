/** Options of path normalization (gateway.mergeSlashes, and how escaped slashes are treated). */
export interface NormalizeOptions {
  /** Merge runs of '/' into one (default true; Envoy's merge_slashes). */
  mergeSlashes?: boolean;
  /**
   * Refuse `%2F` / `%5C` (default true). When false they are kept encoded (uppercase) and never
   * decoded, so the router, RBAC and the upstream all see the same encoded form.
   */
  rejectEscapedSlashes?: boolean;
}

const SLASH = 47;
const BACKSLASH = 92;

/**
 * Canonical form of a request path (origin-form, without the query), computed before routing and
 * RBAC so every layer judges and forwards the same path:
 * - percent-encoded unreserved characters are decoded (`%61` -> `a`, `%2e` -> `.`), other escapes
 *   are kept with uppercase hex (`%c3` -> `%C3`, RFC 3986 6.2.2.1);
 * - runs of '/' are merged (option), then `.` / `..` segments removed (RFC 3986 5.2.4);
 * - null (answer 400) for `%00`, `%2F`/`%5C` (option), a raw backslash, a malformed escape, a `..`
 *   that would climb above the root, or a target that is not origin-form (except `*`).
 *
 * Examples: `/admin/../public` -> `/public`, `/%61dmin` -> `/admin`, `/a//b` -> `/a/b`,
 * `/a/./b/../c` -> `/a/c`, `/a/%2e%2e/b` -> `/b`, `/..` -> null.
 * Fast path: a path with no '%', '\\', '//' or '/.' is returned as is, without allocating.
 */
export function normalizePath(path: string, opts: NormalizeOptions = {}): string | null {
  if (path.charCodeAt(0) !== SLASH) return path === '*' ? path : null;
  if (path.indexOf('%') === -1 && path.indexOf('//') === -1 && path.indexOf('/.') === -1 && path.indexOf('\\') === -1)
    return path;
  const decoded = decodeUnreserved(path, opts.rejectEscapedSlashes !== false);
  if (decoded === null) return null;
  return removeDotSegments(decoded, opts.mergeSlashes !== false);
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 2.3). */
function isUnreserved(c: number): boolean {
  return (
    (c >= 65 && c <= 90) ||
    (c >= 97 && c <= 122) ||
    (c >= 48 && c <= 57) ||
    c === 45 ||
    c === 46 ||
    c === 95 ||
    c === 126
  );
}

function decodeUnreserved(path: string, rejectEscapedSlashes: boolean): string | null {
  let out = '';
  let from = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === BACKSLASH) return null;
    if (c !== 37) continue; // '%'
    const hi = hexVal(path.charCodeAt(i + 1));
    const lo = hexVal(path.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return null;
    const byte = hi * 16 + lo;
    if (byte === 0) return null;
    if ((byte === SLASH || byte === BACKSLASH) && rejectEscapedSlashes) return null;
    out += path.slice(from, i);
    out += isUnreserved(byte) ? String.fromCharCode(byte) : `%${path.slice(i + 1, i + 3).toUpperCase()}`;
    from = i + 3;
    i += 2;
  }
  return from === 0 ? path : out + path.slice(from);
}

/** RFC 3986 5.2.4 over '/'-separated segments; `merge` drops empty segments except a trailing one. */
function removeDotSegments(path: string, merge: boolean): string | null {
  const segs = path.split('/');
  const out: string[] = [];
  const last = segs.length - 1;
  for (let i = 1; i <= last; i++) {
    const s = segs[i];
    if (s === '..') {
      if (out.length === 0) return null; // above the root: hostile, not worth guessing
      out.pop();
      if (i === last) out.push('');
    } else if (s === '.') {
      if (i === last) out.push('');
    } else if (s === '' && merge && i !== last) {
      // An empty segment inside the path ("//") with merging on: dropped.
    } else {
      out.push(s);
    }
  }
  return `/${out.join('/')}`;
}
