import { Counter, Gauge, Registry } from 'prom-client';

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

export function gauge<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[] = [],
  aggregator: 'sum' | 'max' | 'min' | 'first' | 'average' | 'omit' = 'sum',
): Gauge<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Gauge<L>;
  return new Gauge({ name, help, labelNames: labelNames as L[], registers: [registry], aggregator });
}

/**
 * A gauge whose values are read when the registry is scraped (`read` sets them), not maintained on the
 * request path: for counts something else already keeps, such as a circuit breaker's.
 */
export function sampledGauge<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[],
  read: (set: (labels: Record<L, string>, value: number) => void) => void,
): Gauge<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Gauge<L>;
  const g: Gauge<L> = new Gauge({
    name,
    help,
    labelNames: labelNames as L[],
    registers: [registry],
    aggregator: 'sum',
    collect() {
      g.reset();
      read((labels, value) => g.set(labels as never, value));
    },
  });
  return g;
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

/** Children of a batched counter by label values; `retain` drops the series of label sets no longer in use. */
export interface BatchedCounter {
  (...values: string[]): PendingCount;
  retain(keep: (values: readonly string[]) => boolean): void;
}

/**
 * A counter for the request path. prom-client hashes the label values on every `inc()` of a child;
 * here a request only bumps a number and the sums reach prom-client when the registry is read.
 */
export function batchedCounter(name: string, help: string, labelNames: readonly string[]): BatchedCounter {
  const pending = new Map<string, PendingCount>();
  const c = new Counter({
    name,
    help,
    labelNames: [...labelNames],
    registers: [registry],
    collect() {
      for (const p of pending.values()) p.flush();
    },
  });
  const child = (...values: string[]) => {
    const key = values.join('\u0000');
    let p = pending.get(key);
    if (!p) pending.set(key, (p = new PendingCount(c.labels(...values))));
    return p;
  };
  const retain = (keep: (values: readonly string[]) => boolean) => {
    for (const key of pending.keys()) {
      const values = key.split('\u0000');
      if (keep(values)) continue;
      pending.delete(key);
      c.remove(...values);
    }
  };
  return Object.assign(child, { retain });
}

/** One label set of a {@link LatencyHistogram}: bucket counts in a typed array, no per-observe lookup. */
export class HistogramChild {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Record<string, string>,
    readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

/**
 * A histogram for the request path, registered in the prom-client registry as a metric of its own:
 * it renders the same `_bucket{le}` / `_sum` / `_count` series (so the primary's aggregation across
 * workers sums it like a prom-client histogram), but an observation is a bucket scan and three adds.
 */
export class LatencyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #children = new Map<string, HistogramChild>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly bounds: readonly number[],
  ) {}

  labels(...values: string[]): HistogramChild {
    const key = values.join('\u0000');
    let c = this.#children.get(key);
    if (!c)
      this.#children.set(
        key,
        (c = new HistogramChild(Object.fromEntries(this.labelNames.map((n, i) => [n, values[i]])), this.bounds)),
      );
    return c;
  }

  /** Drop the series of label sets no longer in use. */
  retain(keep: (values: readonly string[]) => boolean): void {
    for (const key of this.#children.keys()) if (!keep(key.split('\u0000'))) this.#children.delete(key);
  }

  get() {
    const values: Array<{ value: number; labels: Record<string, string | number>; metricName: string }> = [];
    for (const c of this.#children.values()) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += c.counts[i];
        values.push({ value: cumulative, labels: { ...c.labels, le }, metricName: `${this.name}_bucket` });
      });
      values.push({
        value: cumulative + c.counts[this.bounds.length],
        labels: { ...c.labels, le: '+Inf' },
        metricName: `${this.name}_bucket`,
      });
      values.push({ value: c.sum, labels: c.labels, metricName: `${this.name}_sum` });
      values.push({ value: c.count, labels: c.labels, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#children.clear();
  }
}

/** Declare (or get the already declared) latency histogram `name`. */
export function latencyHistogram(
  name: string,
  help: string,
  labelNames: readonly string[],
  bounds: readonly number[],
): LatencyHistogram {
  const existing = registry.getSingleMetric(name) as unknown;
  if (existing instanceof LatencyHistogram) return existing;
  const h = new LatencyHistogram(name, help, labelNames, bounds);
  registry.registerMetric(h as unknown as Parameters<Registry['registerMetric']>[0]);
  return h;
}
