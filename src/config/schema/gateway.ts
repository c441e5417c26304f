import { Type } from '@sinclair/typebox';
import { Address, Duration, Labels, LocalitySchema, Obj } from './common.js';
import { GatewayTracingSchema } from './tracing.js';

/** Request limits and timeouts; defaults follow Envoy's edge recommendations (see docs/config.md). */
export const LimitsSchema = Obj(
  {
    maxHeaderBytes: Type.Integer({ minimum: 1024, maximum: 1048576, default: 61440 }),
    maxHeaders: Type.Integer({ minimum: 1, maximum: 2000, default: 100 }),
    maxUriLength: Type.Integer({ minimum: 256, maximum: 1048576, default: 16384 }),
    maxBodyBytes: Type.Integer({ minimum: 0, default: 10485760, description: '10 MiB; 0 = unlimited' }),
    headersTimeout: Duration('15s'),
    // A request body must keep arriving: this long, plus 1 s per bodyMinRate bytes received (0s = off).
    bodyTimeout: Duration('15s'),
    bodyMinRate: Type.Integer({ minimum: 0, default: 500, description: 'bytes/s that extend bodyTimeout by 1 s each' }),
    requestTimeout: Duration('300s'),
    keepAliveTimeout: Duration('5s'),
    idleTimeout: Duration('3600s'),
    maxEndpointsPerCluster: Type.Integer({
      minimum: 0,
      default: 100000,
      description: 'a cluster with more endpoints is refused; 0 = unlimited',
    }),
    maxConcurrentStreams: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
    maxConnections: Type.Integer({ minimum: 0, default: 0, description: 'per worker; 0 = unlimited' }),
    maxInFlightRequests: Type.Integer({ minimum: 0, default: 0, description: 'per worker; 0 = unlimited' }),
    heapShedPercent: Type.Integer({ minimum: 0, maximum: 100, default: 95, description: '0 = off' }),
  },
  { default: {} },
);

export const AccessLogSchema = Obj(
  { enabled: Type.Boolean({ default: true }), sampleRate: Type.Number({ minimum: 0, maximum: 1, default: 1 }) },
  { default: {} },
);

/**
 * DNS servers for discovery (`clusters[].discovery.dns`): "ip", "ip:port", "[ipv6]:port" (port 53 when
 * absent), as node:dns `setServers` takes them. Without this section the system's resolv.conf servers.
 */
export const GatewayDnsSchema = Obj({
  servers: Type.Array(
    Type.String({
      pattern: '^(\\[[0-9a-fA-F:.]+\\](:[0-9]{1,5})?|[0-9a-fA-F:.]+)$',
      errorMessage: 'expected ip, ip:port or [ipv6]:port',
    }),
    { minItems: 1 },
  ),
});

/**
 * Credentials for Kubernetes discovery (`clusters[].discovery.kubernetes`). Without `kubeconfig`: the
 * in-cluster service account when KUBERNETES_SERVICE_HOST is set, else $KUBECONFIG, else ~/.kube/config.
 */
export const GatewayKubernetesSchema = Obj({ kubeconfig: Type.Optional(Type.String({ minLength: 1 })) });

/**
 * The Gateway API as a config source (control/sources/gateway-api): GatewayClasses naming
 * `controllerName` are ours; their Gateways' listeners open on `address` (or, with an `addresses` pool,
 * each Gateway on its own) and their port, or the port `portMap` maps it to (a process that cannot bind
 * below 1024). Off unless set.
 */
export const GatewayApiSchema = Obj({
  controllerName: Type.String({ minLength: 1, default: 'meridian.dev/gateway-controller' }),
  address: Type.String({ minLength: 1, default: '0.0.0.0' }),
  portMap: Type.Record(Type.String({ pattern: '^[0-9]+$' }), Type.Integer({ minimum: 0, maximum: 65535 }), {
    default: {},
  }),
  /** A pool: each Gateway opens on one of its own (so two Gateways can both listen on port 80). */
  addresses: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, uniqueItems: true })),
});

export const GatewaySchema = Obj(
  {
    name: Type.String({ default: 'meridian' }),
    locality: LocalitySchema,
    labels: Labels,
    workers: Type.Union([Type.Integer({ minimum: 1, maximum: 256 }), Type.Literal('auto')], {
      default: 'auto',
      errorMessage: 'expected a positive integer or "auto"',
    }),
    trustForwardedHeaders: Type.Boolean({ default: false }),
    drainTimeout: Duration('30s'),
    limits: LimitsSchema,
    accessLog: AccessLogSchema,
    rejectUnderscoreHeaders: Type.Boolean({ default: true }),
    normalizePath: Type.Boolean({ default: true }),
    mergeSlashes: Type.Boolean({ default: true }),
    dns: Type.Optional(GatewayDnsSchema),
    kubernetes: Type.Optional(GatewayKubernetesSchema),
    gatewayApi: Type.Optional(GatewayApiSchema),
    tracing: Type.Optional(GatewayTracingSchema),
  },
  { default: {} },
);

export const AdminSchema = Obj(
  {
    address: Type.String({ default: '127.0.0.1:9901', pattern: Address.pattern, errorMessage: 'expected host:port' }),
    token: Type.Optional(Type.String({ minLength: 1 })),
    tokens: Type.Optional(Type.Array(Obj({ name: Type.String(), token: Type.String({ minLength: 8 }) }))),
    opsAddress: Type.Optional(Address),
    /** Serve an unauthenticated admin API on a non-loopback address anyway (warned at every start). */
    insecure: Type.Boolean({ default: false }),
  },
  { default: {} },
);
