import { Type, type Static } from '@sinclair/typebox';
import { Address, Duration, Labels, Name, Obj } from '../config/schema/common.js';
import { msOf } from '../config/duration.js';
import { TRUST_DOMAIN_PATTERN } from '../common/spiffe-id.js';
import { HealthCheckSchema } from '../config/schema/cluster.js';
import { applySchema, checkConfig, deepFreeze, substituteAll, type ConfigError } from '../config/validate.js';
import { FLEET_BOUNDS_MAX, FLEET_SERIES_MAX, MANAGED_KINDS } from './protocol.js';

/** A managed resource: any gateway resource plus `targets` (labels a gateway must carry). */
const Targeted = Type.Object({ name: Name, targets: Type.Optional(Labels) }, { additionalProperties: true });

export const VirtualDestinationSchema = Obj({
  name: Name,
  host: Type.String({ pattern: '^[A-Za-z0-9_.-]+$', errorMessage: 'expected a host name' }),
  port: Type.Integer({ minimum: 1, maximum: 65535, default: 80 }),
  selector: Type.Record(Type.String(), Type.String(), {
    minProperties: 1,
    errorMessage: 'expected labels selecting service instances',
  }),
  failover: Obj(
    {
      /** Active-active, closest first (the default): local, same zone, same region, then others. */
      priorityFromLocality: Type.Optional(Type.Boolean()),
      /** Active-passive: the value of the `cluster` label of gateways, in failover order. */
      order: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
    },
    { default: {} },
  ),
  healthCheck: Type.Optional(HealthCheckSchema),
  targets: Type.Optional(Labels),
});

/** The fleet's certificate authority (docs/multicluster.md#certificates-issued-by-the-hub). */
export const HubCaSchema = Obj({
  trustDomain: Type.String({
    pattern: TRUST_DOMAIN_PATTERN,
    errorMessage: 'expected a trust domain like mesh.example',
  }),
  /** The CA certificate and key (PEM files); without them one is generated and kept in the state directory. */
  cert: Type.Optional(Type.String()),
  key: Type.Optional(Type.String()),
  /** Lifetime of each issued SVID; at least 1m. */
  svidTtl: Duration('1h'),
});

/** The shortest SVID lifetime accepted: renewal at half-life must leave time for a round trip. */
const MIN_SVID_TTL_MS = 60_000;

export const HubSectionSchema = Obj(
  {
    address: Type.String({ default: '127.0.0.1:9950', pattern: Address.pattern, errorMessage: 'expected host:port' }),
    /** With `gateways`, a token may only speak the gateway protocol, as one of those gateway ids. */
    tokens: Type.Optional(
      Type.Array(
        Obj({
          name: Type.String(),
          token: Type.String({ minLength: 8 }),
          gateways: Type.Optional(Type.Array(Name, { minItems: 1 })),
        }),
      ),
    ),
    /** TLS for the hub API; with `clientCa`, client certificates are required (mTLS). */
    tls: Type.Optional(Obj({ cert: Type.String(), key: Type.String(), clientCa: Type.Optional(Type.String()) })),
    /** Issue SVIDs to gateways (off when absent). */
    ca: Type.Optional(HubCaSchema),
    /** Serve an unauthenticated hub API on a non-loopback address anyway (warned at every start). */
    insecure: Type.Boolean({ default: false }),
    /**
     * Where hub replicas share the document (hub/etcd-store.ts); without it, the local state file only.
     * Each replica keeps its own `address`, `tls` and `store`.
     */
    store: Type.Optional(
      Obj({
        etcd: Obj({
          endpoints: Type.Array(Type.String({ pattern: '^https?://', errorMessage: 'expected http(s)://host:port' }), {
            minItems: 1,
          }),
          prefix: Type.String({ default: '/meridian/hub', pattern: '^/' }),
          timeout: Duration('2s'),
          tls: Type.Optional(
            Obj({ ca: Type.String(), cert: Type.Optional(Type.String()), key: Type.Optional(Type.String()) }),
          ),
          /**
           * How long the elected replica (it signs SVIDs and takes CA rotation steps) keeps its role
           * after it stops renewing its lease: another replica takes over within this time of a crash.
           */
          leaderTtl: Duration('5s'),
          /** The URL other replicas reach this one at (the elected one gets forwarded requests); default from `address`. */
          advertiseUrl: Type.Optional(
            Type.String({ pattern: '^https?://', errorMessage: 'expected http(s)://host:port' }),
          ),
        }),
      }),
    ),
  },
  { default: {} },
);

export const HubConfigSchema = Obj({
  hub: HubSectionSchema,
  routes: Type.Array(Targeted, { default: [] }),
  clusters: Type.Array(Targeted, { default: [] }),
  rateLimits: Type.Array(Targeted, { default: [] }),
  virtualDestinations: Type.Array(VirtualDestinationSchema, { default: [] }),
  /**
   * Gateways whose SVIDs are refused, by the hub (no new SVID, no call authenticated with one) and by
   * every peer (their east-west listeners), however long the SVIDs would still be valid. `name` is
   * the gateway id. A revoked gateway also leaves every virtual destination.
   */
  revokedGateways: Type.Array(Obj({ name: Name, reason: Type.Optional(Type.String({ maxLength: 256 })) }), {
    default: [],
  }),
});

export type HubConfig = Static<typeof HubConfigSchema>;
export type VirtualDestination = HubConfig['virtualDestinations'][number];

export type HubValidation = { ok: true; config: HubConfig } | { ok: false; errors: ConfigError[] };

/** Drop the hub-only `targets` field, leaving the resource as a gateway sees it. */
export function withoutTargets<T extends { targets?: unknown }>(r: T): Omit<T, 'targets'> {
  const { targets: _t, ...rest } = r;
  return rest;
}

/**
 * Validate a fleet document: its own shape, then every managed resource with the gateway's schema
 * and reference checks (as if one gateway received all of them), so paths point into the document.
 */
export function validateHubConfig(input: unknown, env: NodeJS.ProcessEnv = process.env): HubValidation {
  const substituted = substituteAll(input, env);
  return substituted.ok ? checkHubConfig(substituted.value) : substituted;
}

/** {@link validateHubConfig} after `${VAR}` substitution (a persisted document is stored resolved). */
export function checkHubConfig(value: unknown): HubValidation {
  const shaped = applySchema<HubConfig>(HubConfigSchema, value);
  if (!shaped.ok) return shaped;
  const config = shaped.value;
  // A copy: the gateway's defaults must not be filled into the hub's own document.
  const asGateway = structuredClone(Object.fromEntries(MANAGED_KINDS.map((k) => [k, config[k].map(withoutTargets)])));
  const gateway = checkConfig(asGateway);
  const errors = gateway.ok
    ? []
    : gateway.errors.filter((e) => !e.path.startsWith('admin') && !e.path.startsWith('gateway'));
  errors.push(...virtualDestinationErrors(config), ...caErrors(config));
  return errors.length ? { ok: false, errors } : { ok: true, config: deepFreeze(config) };
}

function caErrors(config: HubConfig): ConfigError[] {
  const ca = config.hub.ca;
  if (!ca) return [];
  const errors: ConfigError[] = [];
  if ((ca.cert === undefined) !== (ca.key === undefined))
    errors.push({ path: 'hub.ca', message: 'cert and key must be given together (or neither: generated)' });
  if (msOf(ca).svidTtl < MIN_SVID_TTL_MS)
    errors.push({ path: 'hub.ca.svidTtl', message: 'svidTtl must be at least 1m' });
  return errors;
}

function virtualDestinationErrors(config: HubConfig): ConfigError[] {
  const errors: ConfigError[] = [];
  const seen = new Set<string>();
  config.virtualDestinations.forEach((vd, i) => {
    if (seen.has(vd.name))
      errors.push({ path: `virtualDestinations[${i}].name`, message: `duplicate virtual destination "${vd.name}"` });
    seen.add(vd.name);
    if (vd.failover.order && vd.failover.priorityFromLocality) {
      errors.push({
        path: `virtualDestinations[${i}].failover`,
        message: 'set either priorityFromLocality or order, not both',
      });
    }
  });
  return errors;
}

const Str = Type.String({ maxLength: 256 });
const ReportLabels = Type.Record(Str, Str);

const Count = Type.Number({ minimum: 0 });
/** A route's or cluster's numbers; buckets one more than the bounds (checked in fleet-metrics.ts). */
const SeriesFields = {
  name: Type.String({ minLength: 1, maxLength: 256 }),
  requests: Count,
  errors: Count,
  buckets: Type.Array(Count, { maxItems: FLEET_BOUNDS_MAX + 1 }),
  latencySum: Count,
};
const Series = Type.Array(Type.Object(SeriesFields), { maxItems: FLEET_SERIES_MAX + 1 });

/**
 * A report's traffic summary: at most FLEET_SERIES_MAX series and an `_other` per kind, so a report's
 * size does not grow with the gateway's route count. Numbers are finite (TypeBox refuses NaN and the
 * Infinity an overlong JSON number parses to).
 */
const FleetSummarySchema = Type.Object({
  intervalSeconds: Type.Number({ exclusiveMinimum: 0, maximum: 86400 }),
  bounds: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, maxItems: FLEET_BOUNDS_MAX }),
  routes: Series,
  clusters: Type.Array(Type.Object({ ...SeriesFields, ejected: Type.Integer({ minimum: 0 }) }), {
    maxItems: FLEET_SERIES_MAX + 1,
  }),
  snapshotVersion: Type.Optional(Type.Integer({ minimum: 0 })),
  svidExpiry: Type.Optional(Type.Number({ minimum: 0 })),
});

/** A gateway's report, checked before the hub believes it (a gateway is a client like any other). */
export const ReportSchema = Type.Object({
  labels: ReportLabels,
  locality: Type.Object({ region: Str, zone: Str, subzone: Str }),
  eastWestAddress: Type.Optional(Address),
  instances: Type.Array(
    Type.Object({ cluster: Str, address: Address, labels: ReportLabels, healthy: Type.Boolean() }),
    {
      maxItems: 10000,
    },
  ),
  summary: Type.Optional(FleetSummarySchema),
});

export const AckSchema = Type.Object({
  version: Type.Integer(),
  hash: Str,
  ok: Type.Boolean(),
  errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }), { maxItems: 100 })),
});
