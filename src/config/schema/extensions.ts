import { Type } from '@sinclair/typebox';

/**
 * Sections added by later capabilities (auth, rbac, rate limits, redis). Each is owned by its
 * filter's schema module; listed here so the root schema stays one object.
 */
export const ExtensionSchemas = {
  auth: Type.Optional(Type.Any()),
  rbac: Type.Array(Type.Any(), { default: [] }),
  rateLimits: Type.Array(Type.Any(), { default: [] }),
  redis: Type.Optional(Type.Any()),
};
