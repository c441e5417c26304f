import type { EndpointConfig } from '../../src/config/schema/index.js';
import type { EndpointSink } from '../../src/discovery/endpoint-source.js';
import type { counter, gauge } from '../../src/observability/metrics.js';

/** A sink that records every set a discovery source hands it. */
export class RecordingSink implements EndpointSink {
  readonly calls: Array<{ cluster: string; endpoints: EndpointConfig[]; source: string; at: number }> = [];

  async setEndpoints(cluster: string, endpoints: EndpointConfig[], source: string): Promise<void> {
    this.calls.push({ cluster, endpoints, source, at: Date.now() });
  }

  /** The addresses of each set handed for `cluster`, in order. */
  addresses(cluster: string): string[][] {
    return this.calls.filter((c) => c.cluster === cluster).map((c) => c.endpoints.map((e) => e.address));
  }

  /** The last set handed for `cluster` ([] before the first). */
  last(cluster: string): EndpointConfig[] {
    return this.calls.filter((c) => c.cluster === cluster).at(-1)?.endpoints ?? [];
  }
}

/** The value of the series of `metric` whose labels include `labels`; undefined when there is none. */
export async function metricValue(
  metric: ReturnType<typeof counter> | ReturnType<typeof gauge>,
  labels: Record<string, string>,
): Promise<number | undefined> {
  const { values } = await metric.get();
  return values.find((v) =>
    Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val),
  )?.value;
}
