import { Type } from '@sinclair/typebox';
import { Address, Duration, Labels, LocalitySchema, Name, Obj } from './common.js';

const HealthOverride = Type.Union(
  ['healthy', 'degraded', 'unhealthy', 'draining'].map((v) => Type.Literal(v)),
  {
    errorMessage: 'expected healthy, degraded, unhealthy or draining',
  },
);

export const EndpointSchema = Obj({
  address: Address,
  weight: Type.Integer({ minimum: 1, maximum: 1000000, default: 1 }),
  priority: Type.Integer({ minimum: 0, maximum: 128, default: 0 }),
  locality: LocalitySchema,
  labels: Labels,
  health: Type.Optional(HealthOverride),
});

/** A locality pattern: the fields given must match, the others are wildcards. */
const LocalityMatch = Obj({
  region: Type.Optional(Type.String()),
  zone: Type.Optional(Type.String()),
  subzone: Type.Optional(Type.String()),
});

export const LbSchema = Obj(
  {
    policy: Type.Union(
      ['round_robin', 'least_request', 'random', 'ring_hash', 'maglev'].map((v) => Type.Literal(v)),
      {
        default: 'round_robin',
        errorMessage: 'expected round_robin, least_request, random, ring_hash or maglev',
      },
    ),
    overprovisioningFactor: Type.Number({ minimum: 1, maximum: 10, default: 1.4 }),
    panicThreshold: Type.Number({ minimum: 0, maximum: 100, default: 50 }),
    priorityFromLocality: Type.Boolean({ default: false }),
    failoverPriority: Type.Optional(Type.Array(Type.String())),
    localityWeighted: Type.Boolean({ default: false }),
    localityWeights: Type.Optional(Type.Array(Obj({ locality: LocalityMatch, weight: Type.Integer({ minimum: 0 }) }))),
    zoneAware: Obj(
      {
        enabled: Type.Boolean({ default: false }),
        minClusterSize: Type.Integer({ minimum: 1, default: 6 }),
        originShares: Type.Optional(Type.Record(Type.String(), Type.Number({ minimum: 0 }))),
      },
      { default: {} },
    ),
    hashOn: Type.Optional(
      Obj({
        header: Type.Optional(Type.String()),
        cookie: Type.Optional(Type.String()),
        sourceIp: Type.Optional(Type.Boolean()),
      }),
    ),
    choiceCount: Type.Integer({ minimum: 2, maximum: 100, default: 2 }),
    activeRequestBias: Type.Number({ minimum: 0, default: 1 }),
    ringHash: Obj(
      {
        minRingSize: Type.Integer({ minimum: 1, default: 1024 }),
        maxRingSize: Type.Integer({ minimum: 1, default: 8388608 }),
      },
      { default: {} },
    ),
    maglev: Obj({ tableSize: Type.Integer({ minimum: 1, default: 65537 }) }, { default: {} }),
    slowStart: Type.Optional(
      Obj({
        window: Duration(),
        aggression: Type.Number({ exclusiveMinimum: 0, default: 1 }),
        minWeightPercent: Type.Number({ minimum: 0, maximum: 100, default: 10 }),
      }),
    ),
  },
  { default: {} },
);

export const HealthCheckSchema = Obj({
  http: Type.Optional(
    Obj({
      path: Type.String({ default: '/healthz' }),
      host: Type.Optional(Type.String()),
      expectedStatuses: Type.Array(Type.Integer(), { default: [200] }),
    }),
  ),
  tcp: Type.Optional(Obj({})),
  interval: Duration('5s'),
  timeout: Duration('1s'),
  jitter: Duration('0ms'),
  healthyThreshold: Type.Integer({ minimum: 1, default: 2 }),
  unhealthyThreshold: Type.Integer({ minimum: 1, default: 3 }),
  noTrafficInterval: Type.Optional(Duration()),
});

const Percent = (def: number) => Type.Integer({ minimum: 0, maximum: 100, default: def });

export const OutlierDetectionSchema = Obj({
  consecutive5xx: Type.Integer({ minimum: 0, default: 5 }),
  consecutiveGatewayFailure: Type.Integer({ minimum: 0, default: 5 }),
  consecutiveLocalOriginFailure: Type.Integer({ minimum: 0, default: 5 }),
  splitExternalLocalOriginErrors: Type.Boolean({ default: false }),
  enforcingConsecutive5xx: Percent(100),
  enforcingConsecutiveGatewayFailure: Percent(0),
  enforcingConsecutiveLocalOriginFailure: Percent(100),
  successRate: Obj(
    {
      minimumHosts: Type.Integer({ default: 5 }),
      requestVolume: Type.Integer({ default: 100 }),
      stdevFactor: Type.Integer({ default: 1900 }),
      enforcing: Percent(100),
      enforcingLocalOrigin: Percent(100),
    },
    { default: {} },
  ),
  failurePercentage: Obj(
    {
      threshold: Percent(85),
      minimumHosts: Type.Integer({ default: 5 }),
      requestVolume: Type.Integer({ default: 50 }),
      enforcing: Percent(0),
      enforcingLocalOrigin: Percent(0),
    },
    { default: {} },
  ),
  interval: Duration('10s'),
  baseEjectionTime: Duration('30s'),
  maxEjectionTime: Duration('300s'),
  maxEjectionTimeJitter: Duration('0s'),
  maxEjectionPercent: Percent(10),
  alwaysEjectOneHost: Type.Boolean({ default: false }),
  successfulActiveHealthCheckUnejectHost: Type.Boolean({ default: true }),
});

export const CircuitBreakersSchema = Obj(
  {
    maxConnections: Type.Integer({ minimum: 1, default: 1024 }),
    maxPendingRequests: Type.Integer({ minimum: 0, default: 1024 }),
    maxRequests: Type.Integer({ minimum: 1, default: 1024 }),
    maxRetries: Type.Integer({ minimum: 0, default: 3 }),
    retryBudget: Type.Optional(
      Obj({
        budgetPercent: Type.Number({ minimum: 0, maximum: 100, default: 20 }),
        minRetryConcurrency: Type.Integer({ minimum: 0, default: 3 }),
      }),
    ),
  },
  { default: {} },
);

export const UpstreamTlsSchema = Obj({
  sni: Type.Optional(Type.String()),
  ca: Type.Optional(Type.String()),
  cert: Type.Optional(Type.String()),
  key: Type.Optional(Type.String()),
  verifySubjectAltName: Type.Optional(Type.Array(Type.String())),
  minVersion: Type.Optional(Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')])),
  insecureSkipVerify: Type.Boolean({ default: false }),
});

/**
 * DNS discovery (Envoy's STRICT_DNS and LOGICAL_DNS): `name` is resolved (A and AAAA) every `refresh`;
 * `strict` makes every address an endpoint, `logical` only the first. See docs/config.md#dns-clusters.
 */
export const DnsDiscoverySchema = Obj({
  name: Type.String({
    pattern: '^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_.])?$',
    errorMessage: 'expected a DNS name',
  }),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  refresh: Duration('5s'),
  mode: Type.Union([Type.Literal('strict'), Type.Literal('logical')], {
    default: 'strict',
    errorMessage: 'expected strict or logical',
  }),
});

/**
 * Kubernetes discovery: the EndpointSlices of `service` in `namespace` (label `kubernetes.io/service-name`),
 * listed and watched. `port` picks the slice port by name (the Service port's name) or by number (the
 * slice's port, i.e. the pods' target port). See docs/config.md#kubernetes-clusters.
 */
export const KubernetesDiscoverySchema = Obj({
  // DNS-1035 label, as Service names are; DNS-1123 label, as namespace names are.
  service: Type.String({
    pattern: '^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$',
    errorMessage: 'expected a Service name (DNS-1035 label)',
  }),
  namespace: Type.String({
    pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$',
    default: 'default',
    errorMessage: 'expected a namespace name (DNS-1123 label)',
  }),
  port: Type.Union(
    [Type.Integer({ minimum: 1, maximum: 65535 }), Type.String({ pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' })],
    {
      errorMessage: 'expected a port number (1-65535) or a port name',
    },
  ),
});

/** Where a cluster's endpoints come from instead of `endpoints`: one source kind per cluster. */
export const DiscoverySchema = Obj({
  dns: Type.Optional(DnsDiscoverySchema),
  kubernetes: Type.Optional(KubernetesDiscoverySchema),
});

export const ClusterSchema = Obj({
  name: Name,
  kind: Type.Union([Type.Literal('static'), Type.Literal('aggregate')], {
    default: 'static',
    errorMessage: 'expected static or aggregate',
  }),
  clusters: Type.Optional(Type.Array(Name, { description: 'aggregate: member clusters in failover order' })),
  protocol: Type.Union([Type.Literal('http1'), Type.Literal('http2')], {
    default: 'http1',
    errorMessage: 'expected http1 or http2',
  }),
  connectTimeout: Duration('5s'),
  keepAliveTimeout: Duration('4s'),
  endpoints: Type.Array(EndpointSchema, { default: [] }),
  discovery: Type.Optional(DiscoverySchema),
  lb: LbSchema,
  healthCheck: Type.Optional(HealthCheckSchema),
  outlierDetection: Type.Optional(OutlierDetectionSchema),
  circuitBreakers: CircuitBreakersSchema,
  maxConnectionsPerEndpoint: Type.Integer({ minimum: 1, default: 128 }),
  upstreamTls: Type.Optional(UpstreamTlsSchema),
});
