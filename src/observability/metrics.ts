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
