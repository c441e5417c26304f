import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { SetErrorFunction, DefaultErrorFunction } from '@sinclair/typebox/errors';
import { ConfigSchema, type Config } from './schema/index.js';
import { checkReferences } from './references.js';
import { substituteEnv } from './env.js';

/** One validation error: a JS-style field path (`clusters[2].endpoints[0].address`) and a message. */
export interface ConfigError {
  path: string;
  message: string;
}

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
 * Pure: returns a deep-frozen config or every error with its path. Never throws on bad input.
 */
export function validateConfig(input: unknown, env: NodeJS.ProcessEnv = process.env): ValidationResult {
  const substituted = substituteAll(input, env);
  return substituted.ok ? checkConfig(substituted.value) : substituted;
}

/** A deep copy of `input` with every `${VAR}` replaced from `env`, or the errors of missing ones. */
export function substituteAll(input: unknown, env: NodeJS.ProcessEnv): { ok: true; value: unknown } | { ok: false; errors: ConfigError[] } {
  const errors: ConfigError[] = [];
  const value = substituteEnv(structuredClone(input ?? {}), env, '', errors);
  return errors.length ? { ok: false, errors } : { ok: true, value };
}

/** Fill `schema`'s defaults into `value` (in place) and check it, every error with its path. */
export function applySchema<T>(schema: TSchema, value: unknown): { ok: true; value: T } | { ok: false; errors: ConfigError[] } {
  const withDefaults = Value.Default(schema, value);
  const errors = collectSchemaErrors(schema, withDefaults);
  return errors.length ? { ok: false, errors } : { ok: true, value: withDefaults as T };
}

/** Schema, defaults and cross-references of input whose `${VAR}`s are already substituted (mutated in place). */
export function checkConfig(input: unknown): ValidationResult {
  const shaped = applySchema<Config>(ConfigSchema, input);
  if (!shaped.ok) return shaped;
  const refErrors = checkReferences(shaped.value);
  if (refErrors.length) return { ok: false, errors: refErrors };
  return { ok: true, config: deepFreeze(shaped.value) };
}

/** Every schema violation with its field path (the first message per path). */
export function collectSchemaErrors(schema: TSchema, value: unknown): ConfigError[] {
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
