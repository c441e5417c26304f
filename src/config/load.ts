import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { validateConfig, type ValidationResult } from './validate.js';

/** Parse YAML or JSON text (JSON is YAML); a syntax error becomes a config error at the root. */
export function parseConfigText(text: string): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: parseYaml(text) };
  } catch (e) {
    return { ok: false, message: (e as Error).message };
  }
}

/** Read, parse and validate a config file. */
export async function loadConfigFile(file: string): Promise<ValidationResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    return { ok: false, errors: [{ path: '(file)', message: `cannot read ${file}: ${(e as Error).message}` }] };
  }
  const parsed = parseConfigText(text);
  if (!parsed.ok) return { ok: false, errors: [{ path: '(syntax)', message: parsed.message }] };
  return validateConfig(parsed.value);
}
