import type { Config } from '../config/schema/index.js';
import { normalizePath } from './path-normalize.js';

/** The path normalizer of a snapshot's gateway settings (identity when normalization is off). */
export function normalizerFor(g: Config['gateway']): (path: string) => string | null {
  if (!g.normalizePath) return (p) => p;
  const opts = { mergeSlashes: g.mergeSlashes };
  return (p) => normalizePath(p, opts);
}
