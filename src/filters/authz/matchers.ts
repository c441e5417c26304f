import { BlockList, isIP } from 'node:net';

/** A compiled string predicate. */
export type Matcher = (s: string) => boolean;

/**
 * Compile a glob where `*` matches any run of characters, '/' included (Istio's convention, so
 * `spiffe://prod.example/ns/ops/*` matches `.../ns/ops/sa/x` and `/admin/*` matches `/admin/a/b` but
 * not `/admin`). No other metacharacters. Compiled to literal pieces matched left to right with
 * indexOf: linear in the input, no regex backtracking whatever the pattern.
 * Example: "/v*-users*x" -> pieces ["/v", "-users", "x"]: starts with "/v", ends with "x", and
 * "-users" occurs between them ("/v2-users/42/x" matches, "/v2/x" does not).
 */
export function compileGlob(glob: string): Matcher {
  const pieces = glob.split('*');
  if (pieces.length === 1) return (s) => s === glob;
  const first = pieces[0];
  const last = pieces[pieces.length - 1];
  const middle = pieces.slice(1, -1).filter((p) => p !== '');
  const minLength = first.length + last.length;
  return (s) => {
    if (s.length < minLength || !s.startsWith(first) || !s.endsWith(last)) return false;
    let at = first.length;
    const end = s.length - last.length;
    for (const piece of middle) {
      const found = s.indexOf(piece, at);
      if (found === -1 || found + piece.length > end) return false;
      at = found + piece.length;
    }
    return true;
  };
}

/** Any of several globs; exact patterns go through one Set lookup. */
export function compileGlobs(globs: readonly string[]): Matcher {
  const exact = new Set(globs.filter((g) => !g.includes('*')));
  const wild = globs.filter((g) => g.includes('*')).map(compileGlob);
  return (s) => {
    if (exact.has(s)) return true;
    for (const m of wild) if (m(s)) return true;
    return false;
  };
}

/**
 * A CIDR (IPv4 or IPv6; a bare address is a host route) as a predicate on the client IP, on node's
 * BlockList, which also matches IPv4-mapped IPv6 addresses ("::ffff:10.1.2.3") against IPv4 ranges.
 * An unparsable client address never matches.
 */
export function compileCidr(cidr: string): Matcher {
  const slash = cidr.indexOf('/');
  const addr = slash === -1 ? cidr : cidr.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) throw new Error(`invalid CIDR "${cidr}"`);
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const bits = slash === -1 ? (family === 4 ? 32 : 128) : Number(cidr.slice(slash + 1));
  const list = new BlockList();
  list.addSubnet(addr, bits, type);
  return (ip) => {
    const f = isIP(ip);
    return f !== 0 && list.check(ip, f === 4 ? 'ipv4' : 'ipv6');
  };
}
