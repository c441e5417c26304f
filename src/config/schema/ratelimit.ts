import { Type } from '@sinclair/typebox';
import { Duration, Name, Obj } from './common.js';

export const RedisSchema = Obj({
  url: Type.String({ default: 'redis://127.0.0.1:6379' }),
  mode: Type.Union([Type.Literal('standalone'), Type.Literal('sentinel'), Type.Literal('cluster')], {
    default: 'standalone',
    errorMessage: 'expected standalone, sentinel or cluster',
  }),
  sentinels: Type.Optional(Type.Array(Type.String())),
  name: Type.Optional(Type.String({ description: 'sentinel master name' })),
  nodes: Type.Optional(Type.Array(Type.String(), { description: 'cluster seed nodes host:port' })),
  timeout: Duration('50ms'),
  connectTimeout: Duration('1s'),
  tls: Type.Boolean({ default: false }),
  usernameEnv: Type.Optional(Type.String()),
  passwordEnv: Type.Optional(Type.String()),
  keyPrefix: Type.String({ default: 'meridian:rl:' }),
});

const Limit = Obj({
  requests: Type.Integer({ minimum: 1 }),
  per: Duration(),
  burst: Type.Optional(Type.Integer({ minimum: 1 })),
});

const KeyPart = Obj({
  source: Type.Optional(
    Type.Union(
      ['clientIp', 'consumer', 'spiffeId', 'route'].map((s) => Type.Literal(s)),
      { errorMessage: 'expected clientIp, consumer, spiffeId or route' },
    ),
  ),
  header: Type.Optional(Type.String()),
  claim: Type.Optional(Type.String()),
  value: Type.Optional(Type.String()),
});

export const RateLimitPolicySchema = Obj({
  name: Name,
  key: Type.Array(KeyPart, { minItems: 1 }),
  limit: Limit,
  store: Type.Union([Type.Literal('local'), Type.Literal('redis')], {
    default: 'local',
    errorMessage: 'expected local or redis',
  }),
  failureMode: Type.Union([Type.Literal('open'), Type.Literal('closed')], {
    default: 'open',
    errorMessage: 'expected open or closed',
  }),
  onMissingKey: Type.Union([Type.Literal('skip'), Type.Literal('default')], { default: 'skip' }),
  overrides: Type.Array(Obj({ match: Type.String(), limit: Limit }), { default: [] }),
  headersOnSuccess: Type.Boolean({ default: false }),
  batch: Type.Integer({ minimum: 1, maximum: 1000, default: 1, description: 'redis: tokens reserved per round trip' }),
});
