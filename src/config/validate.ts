import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { SetErrorFunction, DefaultErrorFunction } from '@sinclair/typebox/errors';
import { ConfigSchema, type Config } from './schema/index.js';
import { EndpointSchema } from './schema/cluster.js';
import { checkReferences } from './references.js';
import { substituteEnv } from './env.js';
import { parseDurations } from './duration.js';

import type { ConfigError } from './config-error.js';

// The error type lives in a leaf module (env.ts and references.ts report errors too); callers import it from here.
export type { ConfigError };

export type ValidationResult = { ok: true; config: Config } | { ok: false; errors: ConfigError[] };

SetErrorFunction((param) => (param.schema as { errorMessage?: string }).errorMessage ?? DefaultErrorFunction(param));

/** Turn a JSON pointer ("/clusters/2/endpoints/0/address") into "clusters[2].endpoints[0].address". */
export function pointerToPath(pointer: string): string {
  let out = '';
  for (const part of pointer.split('/').slice(1)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^[0-9]+$/.test(key)) out += `[${key}]`;
    else out += out ? `.${key}` : key;
  }
  return out || '(root)';
}

/**
 * Validate raw config input: env substitution, schema (types + defaults), then cross-references.
 * Pure: returns a deep-frozen config, its durations parsed (msOf), or every error with its path. Never throws on bad input.
 */
export function validateConfig(input: unknown, env: NodeJS.ProcessEnv = process.env): ValidationResult {
  const substituted = substituteAll(input, env);
  return substituted.ok ? checkConfig(substituted.value) : substituted;
}

/** A deep copy of `input` (substituteEnv copies as it walks) with every `${VAR}` replaced from `env`, or the errors of missing ones. */
export function substituteAll(
  input: unknown,
  env: NodeJS.ProcessEnv,
): { ok: true; value: unknown } | { ok: false; errors: ConfigError[] } {
  const errors: ConfigError[] = [];
  const value = substituteEnv(input ?? {}, env, '', errors);
  return errors.length ? { ok: false, errors } : { ok: true, value };
}

/** Fill `schema`'s defaults into `value` (in place), check it, every error with its path, and parse its durations. */
export function applySchema<T>(
  schema: TSchema,
  value: unknown,
): { ok: true; value: T } | { ok: false; errors: ConfigError[] } {
  const withDefaults = Value.Default(schema, value);
  const errors = collectSchemaErrors(schema, withDefaults);
  if (errors.length) return { ok: false, errors };
  parseDurations(schema, withDefaults);
  return { ok: true, value: withDefaults as T };
}

/**
 * Schema, defaults and cross-references of input whose `${VAR}`s are already substituted (mutated in
 * place). Every duration is parsed here, once per config version (read with msOf).
 */
export function checkConfig(input: unknown): ValidationResult {
  const filled = withDefaults(input);
  const errors = collectSchemaErrors(ConfigSchema, filled);
  if (errors.length) return { ok: false, errors };
  parseDurations(ConfigSchema, filled);
  const config = filled as Config;
  const refErrors = checkReferences(config);
  if (refErrors.length) return { ok: false, errors: refErrors };
  return { ok: true, config: deepFreeze(config) };
}

/** Compiled checkers, one per schema: a valid document is accepted by generated code (~20x faster). */
const checkers = new WeakMap<TSchema, TypeCheck<TSchema>>();

/** Every schema violation with its field path (the first message per path). */
export function collectSchemaErrors(schema: TSchema, value: unknown): ConfigError[] {
  let checker = checkers.get(schema);
  if (!checker) checkers.set(schema, (checker = TypeCompiler.Compile(schema)));
  // Value.Errors walks the schema dynamically; only a document that fails needs its messages.
  if (checker.Check(value)) return [];
  const seen = new Set<string>();
  const errors: ConfigError[] = [];
  for (const e of Value.Errors(schema, value)) {
    const path = pointerToPath(e.path);
    // A failed union reports each branch too; keep the first, most readable message per path.
    if (seen.has(path)) continue;
    seen.add(path);
    errors.push({ path, message: e.message });
    if (errors.length >= 100) break;
  }
  return errors;
}

/** Freeze an object graph so a published snapshot cannot be mutated by any holder. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}

/**
 * ConfigSchema's defaults: every cluster endpoint's from a filler compiled from EndpointSchema, the
 * rest by Value.Default, which walks the schema per node, ~11 us per endpoint (1.1 s of a
 * 100,000-endpoint cluster's apply). Endpoints are detached while it runs, so it never walks them.
 */
function withDefaults(input: unknown): unknown {
  const clusters = (input as { clusters?: unknown } | null)?.clusters;
  if (!Array.isArray(clusters)) return Value.Default(ConfigSchema, input);
  const detached: Array<[Record<string, unknown>, unknown[]]> = [];
  for (const c of clusters) {
    if (c && typeof c === 'object' && Array.isArray((c as { endpoints?: unknown }).endpoints)) {
      const cluster = c as Record<string, unknown>;
      const endpoints = cluster.endpoints as unknown[];
      for (const e of endpoints) fillEndpoint(e);
      detached.push([cluster, endpoints]);
      delete cluster.endpoints;
    }
  }
  const filled = Value.Default(ConfigSchema, input);
  for (const [cluster, endpoints] of detached) cluster.endpoints = endpoints;
  return filled;
}

/**
 * A defaults filler for a plain object schema, compiled once: each property's `default` when it is
 * absent (objects cloned), then the same for a property that is itself an object schema. Other kinds
 * (records, unions, arrays) only get their own default. Exact for EndpointSchema, whose fields are
 * scalars, the locality object, the labels record and an optional health override.
 */
function compileObjectDefaults(schema: TSchema): (value: unknown) => void {
  const props = Object.entries((schema as { properties?: Record<string, TSchema> }).properties ?? {}).map(
    ([key, prop]) => ({
      key,
      make: defaultMaker((prop as { default?: unknown }).default),
      nested:
        (prop as { type?: string; properties?: unknown }).type === 'object' &&
        (prop as { properties?: unknown }).properties
          ? compileObjectDefaults(prop)
          : undefined,
    }),
  );
  return (value) => {
    if (!value || typeof value !== 'object' || Array.isArray(value)) return;
    const v = value as Record<string, unknown>;
    for (const p of props) {
      if (v[p.key] === undefined && p.make) v[p.key] = p.make();
      p.nested?.(v[p.key]);
    }
  };
}

/** A fresh copy of a default per use: a scalar as is, a flat object by spreading (structuredClone costs ~5 us). */
function defaultMaker(fallback: unknown): (() => unknown) | undefined {
  if (fallback === undefined) return undefined;
  if (fallback === null || typeof fallback !== 'object') return () => fallback;
  const flat = !Array.isArray(fallback) && Object.values(fallback).every((x) => x === null || typeof x !== 'object');
  return flat ? () => ({ ...(fallback as object) }) : () => structuredClone(fallback);
}

const fillEndpoint = compileObjectDefaults(EndpointSchema);
