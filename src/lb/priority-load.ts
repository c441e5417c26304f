/** Host counts (or weights) of one priority level. */
export interface PriorityCounts {
  healthy: number;
  degraded: number;
  /** All hosts of the level (excluded hosts already removed). */
  total: number;
}

/** Result of the per-priority computation (Envoy's recalculatePerPriorityState + panic). */
export interface PriorityLoad {
  healthy: number[];
  degraded: number[];
  panic: boolean[];
  /** All levels in panic: load follows host counts, over all hosts of each level. */
  totalPanic: boolean;
  normalizedTotal: number;
}

/**
 * Envoy's integer priority-load math.
 *
 * health(P) = min(100, floor(factor% * healthy / total)), degraded(P) likewise; the normalized total
 * is min(100, Σ health + Σ degraded). Healthy loads are handed out in priority order as
 * floor(health * 100 / total), then degraded loads, and the rounding remainder goes to the first
 * priority with availability. Worked example (factor 140, P0 5 of 100 healthy, P1 65 of 100):
 * health 7 and 91, total 98, loads floor(700/98)=7 and floor(9100/98)=92, remainder 1 to P0 -> 8/92.
 *
 * Panic (only when the normalized total is below 100): a level is in panic when
 * 100 * (healthy + degraded) / total < threshold. When every level is, load follows host counts.
 */
export function computePriorityLoad(
  levels: readonly PriorityCounts[],
  overprovisioningFactor: number,
  panicThreshold: number,
): PriorityLoad {
  const factor = Math.round(overprovisioningFactor * 100);
  const n = levels.length;
  const healthyAvail = levels.map((l) =>
    l.total === 0 ? 0 : Math.min(100, Math.floor((factor * l.healthy) / l.total)),
  );
  const degradedAvail = levels.map((l) =>
    l.total === 0 ? 0 : Math.min(100, Math.floor((factor * l.degraded) / l.total)),
  );
  const normalizedTotal = Math.min(100, sum(healthyAvail) + sum(degradedAvail));
  const panic = perPriorityPanic(levels, normalizedTotal, Math.floor(panicThreshold));
  if (n > 0 && panic.every(Boolean)) return { ...totalPanicLoad(levels), panic, totalPanic: true, normalizedTotal };
  const healthy = new Array<number>(n).fill(0);
  const degraded = new Array<number>(n).fill(0);
  if (normalizedTotal === 0) {
    if (n > 0) healthy[0] = 100;
    return { healthy, degraded, panic, totalPanic: false, normalizedTotal };
  }
  let remaining = 100;
  let first = -1;
  for (const [avail, load] of [
    [healthyAvail, healthy],
    [degradedAvail, degraded],
  ] as const) {
    for (let i = 0; i < n; i++) {
      const share = Math.min(remaining, Math.floor((avail[i] * 100) / normalizedTotal));
      load[i] = share;
      remaining -= share;
      if (first === -1 && avail[i] > 0) first = i;
    }
  }
  if (remaining > 0 && first !== -1) (healthyAvail[first] > 0 ? healthy : degraded)[first] += remaining;
  assertSum100(healthy, degraded);
  return { healthy, degraded, panic, totalPanic: false, normalizedTotal };
}

function perPriorityPanic(levels: readonly PriorityCounts[], normalizedTotal: number, threshold: number): boolean[] {
  if (normalizedTotal >= 100 || threshold <= 0) return levels.map(() => false);
  return levels.map((l) => {
    if (normalizedTotal === 0) return true;
    const pct = l.total === 0 ? 0 : (100 * (l.healthy + l.degraded)) / l.total;
    return pct < threshold;
  });
}

/** Total panic: floor(100 * hosts_i / hosts), remainder to the first non-empty level. */
function totalPanicLoad(levels: readonly PriorityCounts[]): { healthy: number[]; degraded: number[] } {
  const all = sum(levels.map((l) => l.total));
  const healthy = levels.map((l) => (all === 0 ? 0 : Math.floor((100 * l.total) / all)));
  const firstNonEmpty = levels.findIndex((l) => l.total > 0);
  healthy[Math.max(0, firstNonEmpty)] += 100 - sum(healthy);
  return { healthy, degraded: levels.map(() => 0) };
}

function assertSum100(a: number[], b: number[]) {
  const total = sum(a) + sum(b);
  if (total !== 100) throw new Error(`priority loads sum to ${total}, not 100`);
}

function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}
