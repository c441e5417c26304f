import { Type, type TSchema } from '@sinclair/typebox';
import { DURATION_PATTERN, type DurationText } from '../duration.js';

/**
 * A duration string such as "250ms", "5s", "10m". It stays as written in the document; validation
 * parses it once and code reads the milliseconds with msOf (see ../duration.ts).
 */
export const Duration = (def?: DurationText) =>
  Type.Unsafe<DurationText>(
    Type.String({
      pattern: DURATION_PATTERN,
      errorMessage: 'expected a duration like "250ms", "5s", "10m"',
      ...(def ? { default: def } : {}),
    }),
  );

/** "host:port": hostname, IPv4 or [IPv6], port 0-65535. */
export const Address = Type.String({
  pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$',
  errorMessage: 'expected host:port',
});

export const Name = Type.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$',
  errorMessage: 'expected a name of letters, digits, "_", "-", "." (max 128)',
});

export const LocalitySchema = Type.Object(
  {
    region: Type.String({ default: '' }),
    zone: Type.String({ default: '' }),
    subzone: Type.String({ default: '' }),
  },
  { additionalProperties: false, default: {} },
);

export const Labels = Type.Record(Type.String(), Type.String(), { default: {} });

/** A strict object: unknown keys are errors (typos in config must not pass silently). */
export const Obj = <T extends Record<string, TSchema>>(props: T, opts: Record<string, unknown> = {}) =>
  Type.Object(props, { additionalProperties: false, ...opts });

export const HeaderOps = Obj({
  add: Type.Optional(Type.Record(Type.String(), Type.String())),
  set: Type.Optional(Type.Record(Type.String(), Type.String())),
  remove: Type.Optional(Type.Array(Type.String())),
});
