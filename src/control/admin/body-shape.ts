/**
 * Shape limits for a parsed admin (and hub) API body, checked before any code walks it.
 *
 * Depth: every module that touches a config (validation, secrets, deep-freeze, hashing, structuredClone)
 * recurses, so a body nested 10,000 levels deep would overflow the stack in whichever runs first and
 * answer 500. The deepest value a real config reaches is 9 levels (listeners[].tls.certificates[] and
 * the like; an inline JWKS key adds 2), so 64 leaves ample room and still keeps each recursion shallow.
 *
 * Keys: `__proto__` is refused anywhere. JSON.parse (and the yaml package) create it as an own
 * property, but any later `{ ...x }`/assignment copy turns it into a prototype and the key vanishes,
 * so the write would be accepted without it. `constructor` needs no rule here: every schema object
 * is closed, so it is already refused as an unexpected property.
 *
 * YAML is checked twice: its syntax tree before composing (the yaml package's composer recurses per
 * level: `- - - ... x` 10,000 levels deep, 20 KB of text, runs the process out of memory), and the
 * composed value after, since aliases can make the value deeper than the text.
 */

import { Parser, type CST } from 'yaml';

/** Containers (objects and arrays) a body may nest, the body itself being level 1. */
export const MAX_BODY_DEPTH = 64;

/** A body the admin API refuses before validation: where, and why. */
export interface BodyShapeError {
  path: string;
  message: string;
}

interface Pending {
  value: unknown;
  path: string;
  depth: number;
}

/**
 * Walk a parsed body with an explicit stack (no recursion, so depth itself cannot overflow) and
 * return the first container deeper than MAX_BODY_DEPTH or the first `__proto__` key, else undefined.
 * Paths read like validation paths: `match.headers[0].__proto__`.
 */
export function checkBodyShape(body: unknown): BodyShapeError | undefined {
  const stack: Pending[] = [{ value: body, path: '', depth: 1 }];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const { value, path, depth } = next;
    if (typeof value !== 'object' || value === null) continue;
    if (depth > MAX_BODY_DEPTH) {
      return { path: path || '(body)', message: DEPTH_MESSAGE };
    }
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--)
        stack.push({ value: value[i], path: `${path}[${i}]`, depth: depth + 1 });
      continue;
    }
    for (const key of Object.keys(value)) {
      const at = path ? `${path}.${key}` : key;
      if (key === '__proto__') return { path: at, message: 'the key "__proto__" is not allowed' };
      stack.push({ value: (value as Record<string, unknown>)[key], path: at, depth: depth + 1 });
    }
  }
  return undefined;
}

const DEPTH_MESSAGE = `nested more than ${MAX_BODY_DEPTH} levels deep (the body depth limit)`;

/**
 * The first YAML document in `text` whose collections nest deeper than MAX_BODY_DEPTH, found on the
 * concrete syntax tree (block maps, block sequences, flow collections) before any value is built.
 */
export function checkYamlDepth(text: string): BodyShapeError | undefined {
  try {
    return deepestYamlDocument(text);
  } catch (e) {
    // The CST parser's generators delegate once per level when a line closes many block levels at
    // once: thousands of levels overflow the stack there, before any tree exists to measure.
    if (e instanceof RangeError) return { path: '(body)', message: DEPTH_MESSAGE };
    throw e;
  }
}

function deepestYamlDocument(text: string): BodyShapeError | undefined {
  for (const doc of new Parser().parse(text)) {
    if (doc.type !== 'document' || !doc.value) continue;
    const stack: Array<{ token: CST.Token; depth: number }> = [{ token: doc.value, depth: 1 }];
    for (let next = stack.pop(); next; next = stack.pop()) {
      const { token, depth } = next;
      if (token.type !== 'block-map' && token.type !== 'block-seq' && token.type !== 'flow-collection') continue;
      if (depth > MAX_BODY_DEPTH) return { path: '(body)', message: DEPTH_MESSAGE };
      for (const item of token.items) {
        const { key, value } = item as { key?: CST.Token | null; value?: CST.Token };
        if (key) stack.push({ token: key, depth: depth + 1 });
        if (value) stack.push({ token: value, depth: depth + 1 });
      }
    }
  }
  return undefined;
}
