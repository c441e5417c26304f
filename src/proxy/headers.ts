import type { RouteConfig } from '../config/schema/index.js';
import type { ErrorCode } from '../common/errors.js';
import { knownName, LOWER, NAMES } from './header-names.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus framing headers the gateway always re-creates. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  'expect',
]);

/** Identity headers only the gateway may set; always stripped from client input. */
export const IDENTITY_HEADERS = new Set(['x-forwarded-client-cert', 'x-real-ip', 'x-spiffe-id']);

/** Header operations of a route, compiled once per snapshot. Names are lower-case. */
export interface HeaderOps {
  readonly set: readonly string[]; // flat name, value
  readonly add: readonly string[];
  readonly remove: ReadonlySet<string>;
  readonly empty: boolean;
}

export const NO_HEADER_OPS: HeaderOps = { set: [], add: [], remove: new Set(), empty: true };

/** Compile a route's `requestHeaders` / `responseHeaders` section. */
export function compileHeaderOps(ops: RouteConfig['requestHeaders']): HeaderOps {
  if (!ops) return NO_HEADER_OPS;
  const flat = (r?: Record<string, string>) => Object.entries(r ?? {}).flatMap(([k, v]) => [k.toLowerCase(), v]);
  const set = flat(ops.set);
  const add = flat(ops.add);
  const remove = new Set((ops.remove ?? []).map((n) => n.toLowerCase()));
  // A `set` also removes the incoming value of that header.
  for (let i = 0; i < set.length; i += 2) remove.add(set[i]);
  return { set, add, remove, empty: set.length + add.length + remove.size === 0 };
}

/** Per-request facts the header builder needs (one object per request, filled by the proxy). */
export interface ForwardFacts {
  clientIp: string;
  proto: 'http' | 'https';
  authority: string;
  trustForwarded: boolean;
  rejectUnderscores: boolean;
  upgrade: boolean;
  /** Identity headers of this snapshot (built-ins plus configured claim headers): never taken from clients. */
  identity: ReadonlySet<string>;
  /** Filled from the request when present; the caller generates them otherwise. */
  requestId: string | undefined;
  traceparent: string | undefined;
}

const VIA = '1.1 meridian';

/**
 * Build the upstream header list (flat [name, value, ...]) from the client's raw headers in one pass:
 * strips hop-by-hop, Connection-nominated, pseudo and identity headers; applies route ops; sets Via and
 * X-Forwarded-*. Returns an error code instead when the request headers are not acceptable.
 */
export function buildUpstreamHeaders(
  raw: readonly string[],
  f: ForwardFacts,
  ops: HeaderOps,
  out: string[],
): ErrorCode | undefined {
  let nominated: Set<string> | undefined;
  let xff: string | undefined;
  let via: string | undefined;
  let hosts = 0;
  let sentProto = false;
  let sentHost = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.charCodeAt(0) === 58 /* ':' */) continue;
    const lower = name.toLowerCase();
    if (lower === 'host') {
      hosts++;
      continue;
    }
    if (f.rejectUnderscores && lower.includes('_')) return 'bad_request';
    if (lower === 'connection') {
      nominated = addNominated(raw[i + 1], nominated);
      continue;
    }
    if (lower === 'te') {
      if (raw[i + 1].trim().toLowerCase() === 'trailers') out.push('te', 'trailers');
      continue;
    }
    if (lower === 'upgrade' && f.upgrade) {
      out.push(name, raw[i + 1]);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || f.identity.has(lower) || ops.remove.has(lower)) continue;
    if (lower === 'x-forwarded-for') {
      if (f.trustForwarded) xff = xff ? `${xff}, ${raw[i + 1]}` : raw[i + 1];
      continue;
    }
    if (lower === 'x-forwarded-proto' || lower === 'x-forwarded-host') {
      if (f.trustForwarded) {
        out.push(name, raw[i + 1]);
        if (lower === 'x-forwarded-proto') sentProto = true;
        else sentHost = true;
      }
      continue;
    }
    if (lower === 'via') {
      via = via ? `${via}, ${raw[i + 1]}` : raw[i + 1];
      continue;
    }
    if (lower === 'x-request-id') f.requestId ??= raw[i + 1];
    else if (lower === 'traceparent') f.traceparent ??= raw[i + 1];
    out.push(name, raw[i + 1]);
  }
  if (hosts > 1) return 'bad_request';
  if (nominated) removeHeaders(out, nominated);
  if (f.upgrade) out.push('connection', 'upgrade');
  out.push('host', f.authority);
  out.push('x-forwarded-for', xff ? `${xff}, ${f.clientIp}` : f.clientIp);
  // Behind a trusted proxy its X-Forwarded-Proto/-Host are kept; the gateway's own fill in when absent.
  if (!sentProto) out.push('x-forwarded-proto', f.proto);
  if (!sentHost) out.push('x-forwarded-host', f.authority);
  out.push('via', via ? `${via}, ${VIA}` : VIA);
  for (let i = 0; i < ops.set.length; i++) out.push(ops.set[i]);
  for (let i = 0; i < ops.add.length; i++) out.push(ops.add[i]);
  return undefined;
}

function addNominated(value: string, into: Set<string> | undefined): Set<string> | undefined {
  // Nearly every upstream says just "keep-alive" (or "close"), which nominates nothing: no split.
  if (value.length <= 10 && NOMINATES_NOTHING.has(value.toLowerCase())) return into;
  for (const token of value.split(',')) {
    const t = token.trim().toLowerCase();
    if (t && !NOMINATES_NOTHING.has(t)) (into ??= new Set()).add(t);
  }
  return into;
}

/** Connection tokens that are options, not header names: they nominate nothing for removal. */
const NOMINATES_NOTHING = new Set(['keep-alive', 'close', 'upgrade']);

/**
 * Remove, in place, every header of a flat list whose lower-cased name is listed: names nominated
 * by Connection (a Set) or credentials the filters consumed (a short array).
 */
export function removeHeaders(out: string[], names: ReadonlySet<string> | readonly string[]): void {
  const list = Array.isArray(names) ? (names as readonly string[]) : undefined;
  const set = names as ReadonlySet<string>;
  let w = 0;
  for (let r = 0; r < out.length; r += 2) {
    const lower = out[r].toLowerCase();
    if (list ? list.includes(lower) : set.has(lower)) continue;
    out[w++] = out[r];
    out[w++] = out[r + 1];
  }
  out.length = w;
}

/**
 * Convert undici's raw response headers (Buffers) into a flat string list for the client, dropping
 * hop-by-hop headers and applying the route's response ops. Decoded as latin1, like Node's own
 * parser: every byte maps to one char and back, so non-ASCII values reach the client unchanged
 * (utf8 decoding re-encoded them, or turned them into U+FFFD).
 */
export function buildResponseHeaders(
  raw: readonly Buffer[] | readonly string[],
  ops: HeaderOps,
  extra: readonly string[] | undefined,
  keepUpgrade: boolean,
): string[] {
  const out: string[] = [];
  let nominated: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const bytes = raw[i];
    const known = typeof bytes === 'string' ? -1 : knownName(bytes);
    const name = known >= 0 ? NAMES[known] : bytes.toString('latin1');
    const lower = known >= 0 ? LOWER[known] : name.toLowerCase();
    if (lower === 'connection') nominated = addNominated(raw[i + 1].toString('latin1'), nominated);
    if (HOP_BY_HOP.has(lower) && !(keepUpgrade && (lower === 'upgrade' || lower === 'connection'))) continue;
    if (ops.remove.size !== 0 && ops.remove.has(lower)) continue;
    out.push(name, raw[i + 1].toString('latin1'));
  }
  if (nominated) removeHeaders(out, nominated);
  for (let i = 0; i < ops.set.length; i++) out.push(ops.set[i]);
  for (let i = 0; i < ops.add.length; i++) out.push(ops.add[i]);
  if (extra) for (let i = 0; i < extra.length; i++) out.push(extra[i]);
  return out;
}

/** The Content-Length of a flat header list, or -1 when absent (no header object is built). */
export function contentLengthIn(flat: readonly string[]): number {
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i].length === 14 && flat[i].toLowerCase() === 'content-length') return Number(flat[i + 1]);
  }
  return -1;
}

/** Flat header list -> object (HTTP/2 responses need one); repeated names become arrays. */
export function flatToObject(flat: readonly string[]): Record<string, string | string[]> {
  const obj: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i < flat.length; i += 2) {
    const k = flat[i].toLowerCase();
    const prev = obj[k];
    if (prev === undefined) obj[k] = flat[i + 1];
    else if (Array.isArray(prev)) prev.push(flat[i + 1]);
    else obj[k] = [prev, flat[i + 1]];
  }
  return obj;
}

/** Trailer fields the gateway never forwards: framing and routing fields (RFC 9110 §6.5.1). */
const FORBIDDEN_TRAILERS = new Set([...HOP_BY_HOP, 'content-length', 'host']);

/**
 * Upstream response trailers (undici's flat raw list; empty when there were none) as an object for
 * `res.addTrailers`, or undefined when there are none. Decoded as latin1 like the response headers;
 * pseudo and framing fields are dropped, repeated names kept.
 */
export function trailersToObject(
  trailers: readonly Buffer[] | readonly string[] | null,
): Record<string, string | string[]> | undefined {
  if (!trailers || trailers.length === 0) return undefined;
  let out: Record<string, string | string[]> | undefined;
  for (let i = 0; i < trailers.length; i += 2) {
    const name = trailers[i].toString('latin1').toLowerCase();
    if (name.charCodeAt(0) === 58 /* ':' */ || FORBIDDEN_TRAILERS.has(name)) continue;
    const value = trailers[i + 1].toString('latin1');
    const prev = (out ??= Object.create(null) as Record<string, string | string[]>)[name];
    out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  return out;
}
