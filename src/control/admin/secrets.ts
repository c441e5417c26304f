import type { ConfigError } from '../../config/validate.js';
import { ApiError } from '../api-error.js';

/** What the admin API shows instead of a secret, and accepts back as "keep the current value". */
export const REDACTED = '<redacted>';

/** JWK members that are secret: the HMAC key and the private parts of RSA / EC / OKP keys. */
const JWK_SECRETS = ['k', 'd', 'p', 'q', 'dp', 'dq', 'qi'];

/** One place a secret lives: `key` names it independently of list order (token name, provider + kid). */
interface SecretSlot {
  path: string;
  key: string;
  holder: Record<string, unknown>;
  field: string;
}

type Loose = Record<string, unknown> | undefined;
const obj = (v: unknown): Loose =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/**
 * The secrets of a config document, valid or not (a written document is read before validation):
 * admin tokens, the management-server token, secret members of inline JWKS keys, the OTLP
 * collector's headers (they carry its API keys); in the hub's document, its API tokens.
 */
function secretSlots(doc: unknown): SecretSlot[] {
  const slots: SecretSlot[] = [];
  const add = (holder: Loose, field: string, path: string, key: string) => {
    if (holder && typeof holder[field] === 'string') slots.push({ path, key, holder, field });
  };
  const root = obj(doc);
  const admin = obj(root?.admin);
  add(admin, 'token', 'admin.token', 'admin.token');
  list(admin?.tokens).forEach((t, i) =>
    add(obj(t), 'token', `admin.tokens[${i}].token`, `admin.tokens[${String(obj(t)?.name)}]`),
  );
  add(obj(root?.managementServer), 'token', 'managementServer.token', 'managementServer.token');
  const otlpHeaders = obj(obj(obj(obj(root?.gateway)?.tracing)?.otlp)?.headers);
  for (const name of Object.keys(otlpHeaders ?? {}))
    add(otlpHeaders, name, `gateway.tracing.otlp.headers.${name}`, `otlp.headers[${name}]`);
  list(obj(root?.hub)?.tokens).forEach((t, i) =>
    add(obj(t), 'token', `hub.tokens[${i}].token`, `hub.tokens[${String(obj(t)?.name)}]`),
  );
  list(obj(root?.auth)?.jwtProviders).forEach((p, i) => {
    const provider = String(obj(p)?.name);
    list(obj(obj(p)?.jwks)?.keys).forEach((k, j) => {
      const id = obj(k)?.kid ?? j;
      for (const m of JWK_SECRETS)
        add(obj(k), m, `auth.jwtProviders[${i}].jwks.keys[${j}].${m}`, `jwks[${provider}][${String(id)}].${m}`);
    });
  });
  return slots;
}

/** The config as the admin API shows it: every secret replaced by {@link REDACTED}. */
export function redactSecrets<T>(config: T): T {
  const copy = structuredClone(config);
  for (const s of secretSlots(copy)) s.holder[s.field] = REDACTED;
  return copy;
}

/**
 * A whole document written through an admin API, made whole again: each {@link REDACTED} takes the
 * current value of the same secret (so GET, edit, PUT keeps the secrets), and a document without its
 * `access` section (`admin` for a gateway, `hub` for the hub) keeps the current one, so a replace
 * cannot drop the API's tokens by omission. A placeholder with no current secret is a 400 with its path.
 */
export function withSecrets<T extends object>(body: unknown, current: T, access: 'admin' | 'hub' = 'admin'): T {
  const doc = obj(body);
  if (!doc) return body as T;
  const restored: Record<string, unknown> = { ...doc };
  if (!(access in restored)) restored[access] = structuredClone((current as Record<string, unknown>)[access]);
  const known = new Map(secretSlots(current).map((s) => [s.key, s.holder[s.field]]));
  const errors: ConfigError[] = [];
  for (const s of secretSlots(restored)) {
    if (s.holder[s.field] !== REDACTED) continue;
    if (known.has(s.key)) s.holder[s.field] = known.get(s.key);
    else errors.push({ path: s.path, message: `"${REDACTED}" keeps the current secret, and there is none here` });
  }
  if (errors.length) throw new ApiError(400, 'invalid config', { errors });
  return restored as T;
}
