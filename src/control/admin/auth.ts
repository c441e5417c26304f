import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Config } from '../../config/schema/index.js';

export type AuthResult = { ok: true; who: string } | { ok: false; status: 401 | 403 };

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Bearer-token check for the admin API: no header -> 401, unknown token -> 403. Tokens are compared
 * as SHA-256 digests with timingSafeEqual so response time does not leak a prefix match.
 */
export function authenticate(req: IncomingMessage, admin: Config['admin']): AuthResult {
  const tokens = [...(admin.token ? [{ name: 'admin', token: admin.token }] : []), ...(admin.tokens ?? [])];
  if (tokens.length === 0) return { ok: true, who: 'anonymous(loopback)' };
  const header = req.headers.authorization;
  // The auth scheme is case-insensitive (RFC 9110 section 11.1).
  if (header?.slice(0, 7).toLowerCase() !== 'bearer ') return { ok: false, status: 401 };
  const presented = digest(header.slice(7).trim());
  for (const t of tokens) if (timingSafeEqual(presented, digest(t.token))) return { ok: true, who: `token:${t.name}` };
  return { ok: false, status: 403 };
}
