import { ConfigSchema, type ClusterConfig, type Config, type EndpointConfig } from './schema/index.js';
import { parseDurations } from './duration.js';

/**
 * What changed in one cluster's endpoint set, by address (addresses are unique in a cluster):
 * `upsert` holds endpoints that are new or whose weight, priority, locality, labels or health
 * override changed; `remove` the addresses that left.
 */
export interface ClusterEndpointDelta {
  upsert: EndpointConfig[];
  remove: string[];
}

/** Cluster name -> its endpoint delta; only clusters whose endpoints changed appear. */
export type EndpointDelta = Record<string, ClusterEndpointDelta>;

/**
 * The endpoint delta from `prev` to `next`, or undefined when anything but static endpoints differs
 * (a route, a listener, a cluster's LB settings: those need a new snapshot). Costs one JSON of each
 * config without its endpoint lists, plus one pass over each cluster's endpoints.
 *
 * Example: prev `app: [a w1, b w1]`, next `app: [b w2, c w1]` -> `{ app: { upsert: [b w2, c w1], remove: [a] } }`.
 */
export function diffEndpoints(prev: Config, next: Config): EndpointDelta | undefined {
  if (prev.clusters.length !== next.clusters.length) return undefined;
  if (withoutEndpoints(prev) !== withoutEndpoints(next)) return undefined;
  const delta: EndpointDelta = {};
  for (let i = 0; i < next.clusters.length; i++) {
    const d = diffClusterEndpoints(prev.clusters[i].endpoints, next.clusters[i].endpoints);
    if (d) delta[next.clusters[i].name] = d;
  }
  return delta;
}

/** One cluster's endpoint delta; undefined when the two sets are the same (order aside). */
export function diffClusterEndpoints(
  prev: readonly EndpointConfig[],
  next: readonly EndpointConfig[],
): ClusterEndpointDelta | undefined {
  const before = new Map(prev.map((e) => [e.address, e]));
  const upsert: EndpointConfig[] = [];
  for (const e of next) {
    const old = before.get(e.address);
    if (!old || !sameEndpoint(old, e)) upsert.push(e);
    before.delete(e.address);
  }
  const remove = [...before.keys()];
  return upsert.length || remove.length ? { upsert, remove } : undefined;
}

/**
 * `endpoints` with a delta applied: survivors keep their order (a changed one its place), new ones are
 * appended. The order may therefore differ from the config the delta was computed from; nothing reads
 * meaning into endpoint order (hosts are identified by address).
 */
export function patchEndpoints(endpoints: readonly EndpointConfig[], delta: ClusterEndpointDelta): EndpointConfig[] {
  const removed = new Set(delta.remove);
  const upserts = new Map(delta.upsert.map((e) => [e.address, e]));
  const out: EndpointConfig[] = [];
  for (const e of endpoints) {
    if (removed.has(e.address)) continue;
    const changed = upserts.get(e.address);
    if (changed) upserts.delete(e.address);
    out.push(changed ?? e);
  }
  for (const e of upserts.values()) out.push(e);
  return out;
}

/** `config` with each cluster named in `delta` given its patched endpoint list (a new object; `config` is not touched). */
export function applyEndpointDelta(config: Config, delta: EndpointDelta): Config {
  const clusters = config.clusters.map(
    (c): ClusterConfig => (delta[c.name] ? { ...c, endpoints: patchEndpoints(c.endpoints, delta[c.name]) } : c),
  );
  return { ...config, clusters };
}

/** Field-by-field (no JSON per endpoint: 100,000 of them are compared on every change). */
export function sameEndpoint(a: EndpointConfig, b: EndpointConfig): boolean {
  return (
    a.address === b.address &&
    a.weight === b.weight &&
    a.priority === b.priority &&
    a.health === b.health &&
    a.locality.region === b.locality.region &&
    a.locality.zone === b.locality.zone &&
    a.locality.subzone === b.locality.subzone &&
    sameLabels(a.labels, b.labels)
  );
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}

/** Two cluster configs equal in every field, endpoints compared as sets by address. */
export function sameCluster(a: ClusterConfig, b: ClusterConfig): boolean {
  return (
    a.name === b.name &&
    a.endpoints.length === b.endpoints.length &&
    clusterWithoutEndpoints(a) === clusterWithoutEndpoints(b) &&
    diffClusterEndpoints(a.endpoints, b.endpoints) === undefined
  );
}

function clusterWithoutEndpoints(c: ClusterConfig): string {
  return JSON.stringify({ ...c, endpoints: undefined });
}

function withoutEndpoints(config: Config): string {
  const clusters = new Set<object>(config.clusters);
  return JSON.stringify(config, function (this: object, key, value) {
    return key === 'endpoints' && clusters.has(this) ? undefined : value;
  });
}

/**
 * An endpoint as it travels to workers: its address alone when every other field has its default
 * (weight 1, priority 0, no locality, labels or health override), else the whole object. Validated
 * endpoints carry all defaults, so 100,000 plain ones are ~12 MB of JSON whole and ~2.5 MB packed: the
 * message a worker parses while it serves requests.
 */
export type PackedEndpoint = string | EndpointConfig;

export function packEndpoints(endpoints: readonly EndpointConfig[]): PackedEndpoint[] {
  return endpoints.map((e) => (isPlain(e) ? e.address : e));
}

export function unpackEndpoints(packed: readonly PackedEndpoint[]): EndpointConfig[] {
  return packed.map((p) =>
    typeof p === 'string'
      ? { address: p, weight: 1, priority: 0, locality: { region: '', zone: '', subzone: '' }, labels: {} }
      : p,
  );
}

function isPlain(e: EndpointConfig): boolean {
  if (e.weight !== 1 || e.priority !== 0 || e.health !== undefined) return false;
  if (e.locality.region || e.locality.zone || e.locality.subzone) return false;
  for (const _ in e.labels) return false;
  return true;
}

/** A config's endpoint lists packed for a worker message (see PackedEndpoint); `unpackConfig` restores them. */
export function packConfig(config: Config): Config {
  return {
    ...config,
    clusters: config.clusters.map((c) =>
      c.endpoints?.length ? { ...c, endpoints: packEndpoints(c.endpoints) as EndpointConfig[] } : c,
    ),
  };
}

/**
 * A config as a worker receives it, made whole: endpoints unpacked, and durations parsed again with
 * the function validation uses (they are never serialized, so IPC drops them; see msOf).
 */
export function unpackConfig(config: Config): Config {
  const whole = {
    ...config,
    clusters: config.clusters.map((c) =>
      c.endpoints?.length ? { ...c, endpoints: unpackEndpoints(c.endpoints as PackedEndpoint[]) } : c,
    ),
  };
  parseDurations(ConfigSchema, whole);
  return whole;
}

/** An endpoint delta packed for a worker message. */
export function packDelta(delta: EndpointDelta): EndpointDelta {
  const out: EndpointDelta = {};
  for (const [name, d] of Object.entries(delta))
    out[name] = { upsert: packEndpoints(d.upsert) as EndpointConfig[], remove: d.remove };
  return out;
}

export function unpackDelta(delta: EndpointDelta): EndpointDelta {
  const out: EndpointDelta = {};
  for (const [name, d] of Object.entries(delta))
    out[name] = { upsert: unpackEndpoints(d.upsert as PackedEndpoint[]), remove: d.remove };
  return out;
}
