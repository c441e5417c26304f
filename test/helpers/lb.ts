import type { Host } from '../../src/cluster/host.js';
import type { LbConfig } from '../../src/lb/types.js';
import { validateConfig } from '../../src/config/validate.js';

/** An `lb` section with the schema's defaults applied. */
export function lbConfig(lb: Record<string, unknown> = {}): LbConfig {
  const r = validateConfig({ clusters: [{ name: 'c', lb }] }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config.clusters[0].lb as LbConfig;
}

/** A host for LB unit tests (healthy, weight 1, P0, empty locality unless overridden). */
export function host(address: string, o: Partial<Host> = {}): Host {
  return {
    address,
    hostname: '127.0.0.1',
    port: 1,
    weight: 1,
    priority: 0,
    locality: { region: '', zone: '', subzone: '' },
    labels: {},
    index: 0,
    flags: 0,
    activeRequests: 0,
    healthySince: 0,
    ...o,
  };
}
