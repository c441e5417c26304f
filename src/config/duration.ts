import { Kind, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Pattern accepted for duration strings in config: "250ms", "5s", "1.5m", "1h". */
export const DURATION_PATTERN = '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$';
const DURATION_RE = new RegExp(DURATION_PATTERN);

/** A duration as users write it in config ("250ms", "5s", "1.5m", "1h"); the type of every Duration() field. */
export type DurationText = `${number}${'ms' | 's' | 'm' | 'h'}`;

/** Parse "250ms" / "5s" / "10m" / "1h" into milliseconds; a number is taken as milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = DURATION_RE.exec(value);
  if (!m) throw new Error(`invalid duration "${value}"`);
  return Math.round(parseFloat(value) * UNIT_MS[m[2]]);
}

/**
 * Where a section keeps its parsed durations. A symbol-keyed own property is what a config needs here:
 * JSON.stringify, structuredClone, Object.keys and hashing skip it (users read back "15s", never a
 * number), while object spread (`{ ...cluster, endpoints }`) copies it along. What drops it (a JSON or
 * structured clone, IPC) yields a document that is validated again, parsed again by
 * {@link parseDurations} (a worker's snapshot, in unpackConfig), or parsed on its first read (msOf).
 */
const MS = Symbol('durations in ms');

/** Sections read after a clone dropped their parsed durations (see msOf), parsed on their first read. */
const parsedAfterClone = new WeakMap<object, Readonly<Record<string, number>>>();

/** The keys of a config section whose values are durations. */
type DurationKeys<T> = { [K in keyof T]-?: NonNullable<T[K]> extends DurationText ? K : never }[keyof T];

/** A section's durations in milliseconds; an optional duration that is not set is undefined. */
export type DurationsMs<T> = { readonly [K in DurationKeys<T>]: undefined extends T[K] ? number | undefined : number };

/**
 * The durations of a validated config section in milliseconds, parsed once when it was validated
 * (e.g. `msOf(route).timeout` is 15000 for `timeout: "15s"`). A clone of a validated section
 * (structuredClone, a JSON round trip) has lost them: it is parsed on its first read, once.
 */
export function msOf<T extends object>(section: T): DurationsMs<T> {
  return ((section as { [MS]?: unknown })[MS] ??
    parsedAfterClone.get(section) ??
    parseClone(section)) as DurationsMs<T>;
}

/**
 * A clone's durations, without its schema: every string written as a duration. Validation has
 * checked each duration field, so all of them are found; another string that happens to look like one
 * (a name "5m") only adds a key that DurationsMs never exposes.
 */
function parseClone(section: object): Readonly<Record<string, number>> {
  const ms: Record<string, number> = {};
  for (const [key, value] of Object.entries(section))
    if (typeof value === 'string' && DURATION_RE.test(value)) ms[key] = parseDuration(value);
  Object.freeze(ms);
  parsedAfterClone.set(section, ms);
  return ms;
}

/** Fills the parsed durations into one value of a schema, in place. */
type DurationParser = (value: unknown) => void;

const parsers = new WeakMap<TSchema, DurationParser | null>();

/**
 * Parse every duration of `value`, a document valid against `schema`, into its section (see
 * {@link msOf}), in place. Validation calls it; so does a worker for the config it receives over IPC.
 * The walk follows the schema and skips subtrees without durations (100,000 endpoints cost nothing).
 */
export function parseDurations(schema: TSchema, value: unknown): void {
  parserFor(schema)?.(value);
}

function isDuration(schema: TSchema): boolean {
  return schema[Kind] === 'String' && schema.pattern === DURATION_PATTERN;
}

/** The parser of a schema, compiled once; null when nothing under it is a duration. */
function parserFor(schema: TSchema): DurationParser | null {
  let parser = parsers.get(schema);
  if (parser === undefined) parsers.set(schema, (parser = compileParser(schema)));
  return parser;
}

function compileParser(schema: TSchema): DurationParser | null {
  switch (schema[Kind]) {
    case 'Object':
      return objectParser(schema.properties as Record<string, TSchema>);
    case 'Array':
      return eachParser(schema.items as TSchema, (v) => (Array.isArray(v) ? v : []));
    case 'Record':
      return eachParser(Object.values(schema.patternProperties as Record<string, TSchema>)[0], (v) =>
        isObject(v) ? Object.values(v) : [],
      );
    case 'Union':
      return unionParser(schema.anyOf as TSchema[]);
    default:
      return null;
  }
}

/**
 * An object's own durations go into one frozen record under MS; nested sections get their own.
 * A frozen object was parsed when it was validated and cannot have changed since: it is skipped.
 */
function objectParser(properties: Record<string, TSchema>): DurationParser | null {
  const entries = Object.entries(properties);
  const durations = entries.filter(([, s]) => isDuration(s)).map(([key]) => key);
  const nested = entries.flatMap(([key, s]) => {
    const parser = isDuration(s) ? null : parserFor(s);
    return parser ? [[key, parser] as const] : [];
  });
  if (!durations.length && !nested.length) return null;
  return (value) => {
    if (!isObject(value) || (Object.isFrozen(value) && MS in value)) return;
    if (durations.length) {
      const ms: Record<string, number> = {};
      for (const key of durations) if (typeof value[key] === 'string') ms[key] = parseDuration(value[key]);
      (value as { [MS]?: unknown })[MS] = Object.freeze(ms);
    }
    for (const [key, parser] of nested) parser(value[key]);
  };
}

function eachParser(item: TSchema, values: (v: unknown) => unknown[]): DurationParser | null {
  const parser = parserFor(item);
  return (
    parser &&
    ((value) => {
      for (const v of values(value)) parser(v);
    })
  );
}

/** A union's value is parsed by the first branch it is valid against (e.g. a JWKS given by uri, not by keys). */
function unionParser(branches: TSchema[]): DurationParser | null {
  const withDurations = branches.flatMap((s) => {
    const parser = parserFor(s);
    return parser ? [[s, parser] as const] : [];
  });
  if (!withDurations.length) return null;
  return (value) => withDurations.find(([s]) => Value.Check(s, value))?.[1](value);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
