const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Pattern accepted for duration strings in config: "250ms", "5s", "1.5m", "1h". */
export const DURATION_PATTERN = '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$';
const DURATION_RE = new RegExp(DURATION_PATTERN);

/** Parse "250ms" / "5s" / "10m" / "1h" into milliseconds; a number is taken as milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = DURATION_RE.exec(value);
  if (!m) throw new Error(`invalid duration "${value}"`);
  return Math.round(parseFloat(value) * UNIT_MS[m[2]]);
}
