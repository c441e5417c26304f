import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The process-wide metric registry. Each component declares its metrics once at module load with
 * these helpers; the primary aggregates the workers' registries (AggregatorRegistry) for /metrics.
 */
export const registry = new Registry();

export function counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter({ name, help, labelNames: labelNames as L[], registers: [registry] });
}

export function gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = [], aggregator: 'sum' | 'max' | 'min' | 'first' | 'average' | 'omit' = 'sum'): Gauge<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Gauge<L>;
  return new Gauge({ name, help, labelNames: labelNames as L[], registers: [registry], aggregator });
}

export function histogram<L extends string>(name: string, help: string, labelNames: readonly L[] = [], buckets?: number[]): Histogram<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Histogram<L>;
  return new Histogram({ name, help, labelNames: labelNames as L[], registers: [registry], ...(buckets ? { buckets } : {}) });
}

/** A hot-path count: a plain increment, folded into its prom-client counter child when scraped. */
export class PendingCount {
  n = 0;
  constructor(readonly child: { inc(v: number): void }) {}

  inc(): void {
    this.n++;
  }

  flush(): void {
    if (this.n === 0) return;
    this.child.inc(this.n);
    this.n = 0;
  }
}

/**
 * A counter for the request path. prom-client hashes the label values on every `inc()` of a child;
 * here a request only bumps a number and the sums reach prom-client when the registry is read.
 */
export function batchedCounter(name: string, help: string, labelNames: readonly string[]): (...values: string[]) => PendingCount {
  const pending = new Map<string, PendingCount>();
  const c = new Counter({
    name, help, labelNames: [...labelNames], registers: [registry],
    collect() {
      for (const p of pending.values()) p.flush();
    },
  });
  return (...values) => {
    const key = values.join('\u0000');
    let p = pending.get(key);
    if (!p) pending.set(key, (p = new PendingCount(c.labels(...values))));
    return p;
  };
}
