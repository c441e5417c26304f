import { Type } from '@sinclair/typebox';
import { Duration, HeaderOps, Name, Obj } from './common.js';
import { RouteTracingSchema } from './tracing.js';

export const HeaderMatchSchema = Obj({
  name: Type.String({ minLength: 1 }),
  exact: Type.Optional(Type.String()),
  prefix: Type.Optional(Type.String()),
  regex: Type.Optional(Type.String()),
  present: Type.Optional(Type.Boolean()),
  invert: Type.Boolean({ default: false }),
});

export const QueryMatchSchema = Obj({
  name: Type.String({ minLength: 1 }),
  exact: Type.Optional(Type.String()),
  regex: Type.Optional(Type.String()),
  present: Type.Optional(Type.Boolean()),
});

export const PathMatchSchema = Obj({
  prefix: Type.Optional(Type.String({ pattern: '^/', errorMessage: 'expected a path starting with /' })),
  exact: Type.Optional(Type.String({ pattern: '^/', errorMessage: 'expected a path starting with /' })),
  regex: Type.Optional(Type.String()),
});

export const RouteMatchSchema = Obj(
  {
    hosts: Type.Optional(
      Type.Array(
        Type.String({
          pattern: '^(\\*\\.)?[A-Za-z0-9_.:\\[\\]-]+$|^\\*$',
          errorMessage: 'expected a host name, "*.suffix" or "*"',
        }),
      ),
    ),
    path: Type.Optional(PathMatchSchema),
    headers: Type.Optional(Type.Array(HeaderMatchSchema)),
    methods: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Z]+$', errorMessage: 'expected an upper-case method' })),
    ),
    query: Type.Optional(Type.Array(QueryMatchSchema)),
  },
  { default: {} },
);

/** HTTP conditions, then the gRPC ones (a grpc-status in the response headers: a Trailers-Only answer). */
const RETRY_ON = [
  '5xx',
  'gateway-error',
  'connect-failure',
  'reset',
  'retriable-status-codes',
  'cancelled',
  'deadline-exceeded',
  'resource-exhausted',
  'internal',
  'unavailable',
];
const RetryOn = Type.Union(
  RETRY_ON.map((v) => Type.Literal(v)),
  { errorMessage: `expected one of ${RETRY_ON.join(', ')}` },
);

export const RetrySchema = Obj({
  attempts: Type.Integer({ minimum: 0, maximum: 10, default: 1, description: 'retries after the first try' }),
  on: Type.Array(RetryOn, { default: ['connect-failure', 'reset'] }),
  statusCodes: Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), { default: [] }),
  perTryTimeout: Type.Optional(Duration()),
  maxBodyBytes: Type.Optional(
    Type.Integer({
      minimum: 0,
      description:
        "request bodies up to this size are kept so a retry can send them again (Envoy's per-request buffer limit); default 65536",
    }),
  ),
  /** The earlier name of maxBodyBytes, still read. */
  bufferBytes: Type.Optional(Type.Integer({ minimum: 0 })),
  backoff: Obj({ base: Duration('25ms'), max: Type.Optional(Duration()) }, { default: {} }),
});

export const RouteSchema = Obj({
  name: Name,
  match: RouteMatchSchema,
  cluster: Type.Optional(Name),
  weightedClusters: Type.Optional(
    Type.Array(Obj({ cluster: Name, weight: Type.Integer({ minimum: 0 }) }), { minItems: 1 }),
  ),
  redirect: Type.Optional(
    Obj({
      scheme: Type.Optional(Type.String()),
      host: Type.Optional(Type.String()),
      path: Type.Optional(Type.String()),
      /** Replaces the matched prefix of the request's path (as rewrite.pathPrefix does upstream). */
      pathPrefix: Type.Optional(Type.String({ pattern: '^/', errorMessage: 'expected a path starting with /' })),
      /** Location uses this port, and the given host or the request's without its port; omitted when it is the scheme's default. */
      port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
      status: Type.Union(
        [301, 302, 303, 307, 308].map((s) => Type.Literal(s)),
        { default: 302, errorMessage: 'expected 301, 302, 303, 307 or 308' },
      ),
    }),
  ),
  directResponse: Type.Optional(
    Obj({
      status: Type.Integer({ minimum: 100, maximum: 599 }),
      body: Type.String({ default: '' }),
      headers: Type.Optional(Type.Record(Type.String(), Type.String())),
    }),
  ),
  rewrite: Type.Optional(
    Obj({
      /** Replaces the matched prefix (or, on an exact match, the matched path). */
      pathPrefix: Type.Optional(Type.String()),
      /** Replaces the whole path (the query is kept). */
      path: Type.Optional(Type.String({ pattern: '^/', errorMessage: 'expected a path starting with /' })),
      host: Type.Optional(Type.String()),
    }),
  ),
  timeout: Duration('15s'),
  idleTimeout: Type.Optional(Duration()),
  retry: Type.Optional(RetrySchema),
  hedge: Type.Optional(Obj({ delay: Duration('50ms') })),
  mirror: Type.Optional(
    Obj({
      cluster: Name,
      percent: Type.Number({ minimum: 0, maximum: 100, default: 100 }),
      maxBodyBytes: Type.Integer({ minimum: 0, default: 65536 }),
    }),
  ),
  requestHeaders: Type.Optional(HeaderOps),
  responseHeaders: Type.Optional(HeaderOps),
  maxBodyBytes: Type.Optional(Type.Integer({ minimum: 0 })),
  auth: Type.Optional(Type.Array(Name)),
  rbac: Type.Optional(Name),
  rateLimits: Type.Optional(Type.Array(Name)),
  tracing: Type.Optional(RouteTracingSchema),
});
