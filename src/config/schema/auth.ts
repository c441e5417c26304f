import { isIP } from 'node:net';
import { Type, type Static } from '@sinclair/typebox';
import { Duration, Name, Obj } from './common.js';

/** Asymmetric JWS algorithms: the only ones usable with keys fetched from a JWKS URI or file. */
export const ASYMMETRIC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;
/** HMAC algorithms: only with inline `oct` keys, never with a published (public) key set. */
export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;

// "none" is not a member, so `algorithms: [none]` fails schema validation (RFC 8725 3.1).
const Algorithm = Type.Union(
  [...ASYMMETRIC_ALGORITHMS, ...HMAC_ALGORITHMS].map((a) => Type.Literal(a)),
  { errorMessage: 'expected a JWS algorithm such as RS256 or ES256 ("none" is never allowed)' },
);

/** Where a token is read from: a header (optionally after a prefix such as "Bearer "), a cookie or a query parameter. */
const TokenSource = Type.Union(
  [
    Obj({ header: Type.String({ minLength: 1 }), prefix: Type.Optional(Type.String()) }),
    Obj({ cookie: Type.String({ minLength: 1 }) }),
    Obj({ query: Type.String({ minLength: 1 }) }),
  ],
  { errorMessage: 'expected { header, prefix? }, { cookie } or { query }' },
);

/** Key material of a JWT provider: exactly one of a remote JWKS URI, inline keys or a JWKS file. */
const JwksSource = Type.Union(
  [
    Obj({
      uri: Type.String({ pattern: '^https?://', errorMessage: 'expected an http(s) URL' }),
      cacheDuration: Duration('10m'),
      cooldown: Duration('30s'),
      timeout: Duration('5s'),
    }),
    Obj({ keys: Type.Array(Type.Record(Type.String(), Type.Unknown()), { minItems: 1 }) }),
    Obj({ file: Type.String({ minLength: 1 }) }),
  ],
  {
    errorMessage:
      'expected jwks with exactly one of { uri, cacheDuration?, cooldown?, timeout? }, { keys } or { file }',
  },
);

/** A JWT issuer: where keys come from, what a valid token must satisfy, where it is read, what is forwarded. */
export const JwtProviderSchema = Obj({
  name: Name,
  issuer: Type.String({ minLength: 1 }),
  audiences: Type.Optional(Type.Array(Type.String(), { minItems: 1 })),
  algorithms: Type.Array(Algorithm, { minItems: 1, default: ['RS256', 'ES256'] }),
  jwks: JwksSource,
  clockSkew: Duration('30s'),
  from: Type.Array(TokenSource, { minItems: 1, default: [{ header: 'authorization', prefix: 'Bearer ' }] }),
  /** claim name (dotted path for nested claims) -> upstream header name */
  forwardClaims: Type.Record(Type.String(), Type.String(), { default: {} }),
  /** Keep the token on the upstream request (default: the header carrying it is removed). */
  forwardToken: Type.Boolean({ default: false }),
  /** false: a request without a token passes unauthenticated (an invalid token is still refused). */
  required: Type.Boolean({ default: true }),
});

/** A named set of API keys (SHA-256 digests) read from one header, each mapped to a consumer. */
export const ApiKeySetSchema = Obj({
  name: Name,
  header: Type.String({ default: 'x-api-key' }),
  keys: Type.Array(
    Obj({
      consumer: Type.String({ minLength: 1 }),
      sha256: Type.String({ pattern: '^[0-9a-fA-F]{64}$', errorMessage: 'expected a SHA-256 hex digest' }),
      metadata: Type.Record(Type.String(), Type.String(), { default: {} }),
    }),
    { default: [] },
  ),
  /** A JSON file holding more keys: [{ consumer, sha256, metadata? }]. */
  file: Type.Optional(Type.String()),
  /** Keep the key header on the upstream request (default: removed, keys are secrets). */
  forwardKey: Type.Boolean({ default: false }),
  /** Upstream header that carries the verified key's consumer name (off unless set; stripped from clients). */
  consumerHeader: Type.Optional(
    Type.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", errorMessage: 'expected a header name' }),
  ),
});

/** The `auth` section: providers that routes name in `auth: [...]`. */
export const AuthSchema = Obj(
  {
    jwtProviders: Type.Array(JwtProviderSchema, { default: [] }),
    apiKeys: Type.Array(ApiKeySetSchema, { default: [] }),
  },
  { default: {} },
);

const ClaimMatch = Obj(
  {
    name: Type.String({ minLength: 1 }),
    equals: Type.Optional(Type.String()),
    contains: Type.Optional(Type.String()),
    in: Type.Optional(Type.Array(Type.String())),
  },
  { minProperties: 2, maxProperties: 2, errorMessage: 'expected { name, and exactly one of equals | contains | in }' },
);

/** One principal: exactly one of the keys. */
export const PrincipalSchema = Obj(
  {
    spiffeId: Type.Optional(Type.String({ minLength: 1 })),
    claim: Type.Optional(ClaimMatch),
    consumer: Type.Optional(Type.String({ minLength: 1 })),
    sourceCidr: Type.Optional(Type.String({ minLength: 1 })),
    authenticated: Type.Optional(Type.Literal(true)),
    any: Type.Optional(Type.Literal(true)),
  },
  {
    minProperties: 1,
    maxProperties: 1,
    errorMessage: 'expected exactly one of spiffeId, claim, consumer, sourceCidr, authenticated: true, any: true',
  },
);

const HeaderMatch = Obj(
  {
    name: Type.String({ minLength: 1 }),
    exact: Type.Optional(Type.String()),
    prefix: Type.Optional(Type.String()),
    present: Type.Optional(Type.Boolean()),
  },
  {
    minProperties: 2,
    maxProperties: 2,
    errorMessage: 'expected { name, and exactly one of exact | prefix | present }',
  },
);

/** A permission: every field given must match (methods AND paths AND headers). */
export const PermissionSchema = Obj({
  methods: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  paths: Type.Optional(
    Type.Array(Type.String({ pattern: '^/', errorMessage: 'expected a path glob starting with "/"' }), { minItems: 1 }),
  ),
  headers: Type.Optional(Type.Array(HeaderMatch, { minItems: 1 })),
});

/** One rule: it matches when any principal and any permission match. */
export const RbacRuleSchema = Obj({
  action: Type.Union([Type.Literal('allow'), Type.Literal('deny')], { errorMessage: 'expected allow or deny' }),
  principals: Type.Array(PrincipalSchema, { minItems: 1, default: [{ any: true }] }),
  permissions: Type.Array(PermissionSchema, { minItems: 1, default: [{}] }),
});

/** An RBAC policy (deny wins, default deny); `shadow` only logs and counts. */
export const RbacPolicySchema = Obj({
  name: Name,
  shadow: Type.Boolean({ default: false }),
  rules: Type.Array(RbacRuleSchema, { minItems: 1 }),
});

/** Derived config types (validated, defaults applied). */
export type AuthConfig = Static<typeof AuthSchema>;
export type JwtProviderConfig = Static<typeof JwtProviderSchema>;
export type ApiKeySetConfig = Static<typeof ApiKeySetSchema>;
export type RbacPolicyConfig = Static<typeof RbacPolicySchema>;
export type RbacRuleConfig = Static<typeof RbacRuleSchema>;
export type PrincipalConfig = Static<typeof PrincipalSchema>;
export type PermissionConfig = Static<typeof PermissionSchema>;

/**
 * Cross-field checks the schema cannot express, as [path, message] pairs for config/references.ts:
 * HMAC algorithms with a JWKS URI or file (keys that are published, so anyone could sign), an
 * unparsable sourceCidr. The filters also enforce the first at compile time.
 */
export function authConfigErrors(auth: AuthConfig, rbac: readonly RbacPolicyConfig[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  auth.jwtProviders.forEach((p, i) => {
    const hmac = p.algorithms.filter((a) => (HMAC_ALGORITHMS as readonly string[]).includes(a));
    if (hmac.length && !('keys' in p.jwks))
      out.push([
        `auth.jwtProviders[${i}].algorithms`,
        `${hmac.join(', ')} needs inline oct keys; refusing HMAC with a published key set`,
      ]);
  });
  rbac.forEach((pol, i) =>
    pol.rules.forEach((r, j) =>
      r.principals.forEach((pr, k) => {
        if (pr.sourceCidr !== undefined && !isCidr(pr.sourceCidr))
          out.push([
            `rbac[${i}].rules[${j}].principals[${k}].sourceCidr`,
            'expected a CIDR such as 10.0.0.0/8 or fd00::/8',
          ]);
      }),
    ),
  );
  return out;
}

/** True for "a.b.c.d/n" (n <= 32) or an IPv6 "x::y/n" (n <= 128); a bare address counts as a host route. */
export function isCidr(s: string): boolean {
  const slash = s.indexOf('/');
  const family = isIP(slash === -1 ? s : s.slice(0, slash));
  if (family === 0) return false;
  if (slash === -1) return true;
  const bits = s.slice(slash + 1);
  return /^[0-9]{1,3}$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32);
}
