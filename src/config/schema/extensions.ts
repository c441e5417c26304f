import { Type } from '@sinclair/typebox';
import { AuthSchema, RbacPolicySchema } from './auth.js';
import { RateLimitPolicySchema, RedisSchema } from './ratelimit.js';

/** Sections of the filters (auth, rbac, rate limits) and their shared Redis connection. */
export const ExtensionSchemas = {
  auth: AuthSchema,
  rbac: Type.Array(RbacPolicySchema, { default: [] }),
  rateLimits: Type.Array(RateLimitPolicySchema, { default: [] }),
  redis: Type.Optional(RedisSchema),
};
