import { counter, gauge } from '../observability/metrics.js';

/**
 * Metric table of the discovery sources. They run in the primary, whose registry /metrics serves
 * next to the workers' (aggregated); no worker sets these, so the sum is the primary's value.
 */
export const discoveredEndpoints = gauge(
  'meridian_discovery_endpoints',
  'Endpoints a discovery source last published for a cluster',
  ['cluster', 'source'],
);
export const dnsResolutionFailures = counter(
  'meridian_dns_resolution_failures_total',
  'DNS lookups of a discovered cluster that failed or came back empty (the last endpoints were kept)',
  ['cluster'],
);
export const kubernetesWatchErrors = counter(
  'meridian_kubernetes_watch_errors_total',
  'Failed EndpointSlice lists and watches of a discovered cluster (the last endpoints were kept)',
  ['cluster'],
);
