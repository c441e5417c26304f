// Meridian configs for each benchmark scenario, the material they need (a JWT, a certificate), and the
// issues' targets the report checks them against.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { SignJWT, generateKeyPair, exportJWK } from 'jose';

const keys = generateKeyPair('ES256');

/** A token for the jwt scenario, signed by the key whose public half is inline in the config. */
export async function jwtToken() {
  const { privateKey } = await keys;
  return new SignJWT({ sub: 'bench' })
    .setProtectedHeader({ alg: 'ES256', kid: 'bench' })
    .setIssuer('https://bench.local')
    .setAudience('bench')
    .setExpirationTime('2h')
    .sign(privateKey);
}

/** A self-signed certificate for the https scenario (openssl CLI). */
export function selfSignedCert(dir) {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/** Ports of the lb-* scenarios' endpoints: extra ports of the upstream process (10 endpoints). */
export const LB_PORTS = Array.from({ length: 10 }, (_, i) => 18120 + i);
export const usesLbPorts = (scenario) => scenario.startsWith('lb-') || scenario === 'full-chain';
/** The tracing scenarios' head-sampling ratios; their spans go to benchmarks/servers/otlp-sink.mjs. */
const TRACING = { 'tracing-1': 0.01, 'tracing-100': 1 };
export const OTLP_SINK_PORT = 18095;
export const usesTracing = (scenario) => scenario in TRACING;
/** Scenarios whose requests carry the bench JWT. */
export const usesJwt = (scenario) => scenario === 'jwt' || scenario === 'full-chain';
export const usesRedis = (scenario) => scenario === 'ratelimit-redis';

/**
 * The issues' targets: the scenario's throughput may cost at most `maxCost` of its baseline's
 * (same tool, same run). CPU per request is reported beside it.
 */
export const TARGETS = [
  { scenario: 'ratelimit-local', base: 'plain', maxCost: 0.05 },
  { scenario: 'ratelimit-redis', base: 'plain', maxCost: 0.2 },
  { scenario: 'lb-lr-outlier', base: 'lb-rr', maxCost: 0.05 },
  { scenario: 'jwt', base: 'plain', maxCost: 0.15 },
  { scenario: 'tracing-1', base: 'plain', maxCost: 0.03 },
];

/** Rate limit far above the load, so the cost of deciding is measured, not refusals. */
const bigLimit = (store) => ({
  name: 'bench',
  key: [{ source: 'clientIp' }],
  limit: { requests: 10000000, per: '1s' },
  store,
});

/**
 * One worker, access log off, one route to the shared upstream; the scenario adds its feature.
 * opts: { cert } for https, { redisUrl } for ratelimit-redis.
 */
export function meridianConfig(scenario, port, opts = {}) {
  const route = { name: 'bench', match: { path: { prefix: '/' } }, cluster: 'up' };
  const config = {
    gateway: { name: `bench-${scenario}`, workers: 1, accessLog: { enabled: false } },
    admin: { address: '127.0.0.1:0' },
    listeners: [
      {
        name: 'main',
        address: `127.0.0.1:${port}`,
        protocol: scenario === 'https' ? 'https' : 'http',
        ...(scenario === 'https' ? { tls: opts.cert } : {}),
      },
    ],
    routes: [route],
    clusters: [{ name: 'up', endpoints: [{ address: '127.0.0.1:18090' }] }],
  };
  if (usesTracing(scenario)) {
    config.gateway.tracing = {
      otlp: { endpoint: `http://127.0.0.1:${OTLP_SINK_PORT}/v1/traces`, protocol: 'http/protobuf' },
      sampling: TRACING[scenario],
    };
  }
  if (scenario === 'full-chain') {
    // Everything a production route runs at once: JWT, a local rate limit, least-request over 10
    // endpoints with outlier detection, metrics (always on) and an access line per request.
    config.gateway.accessLog = { enabled: true };
    config.rateLimits = [bigLimit('local')];
    route.rateLimits = ['bench'];
  }
  if (usesJwt(scenario)) {
    config.auth = {
      jwtProviders: [
        {
          name: 'bench',
          issuer: 'https://bench.local',
          audiences: ['bench'],
          algorithms: ['ES256'],
          jwks: { keys: [] },
        },
      ],
    };
    route.auth = ['bench'];
  }
  if (scenario === 'ratelimit-local') {
    config.rateLimits = [bigLimit('local')];
    route.rateLimits = ['bench'];
  }
  if (scenario === 'ratelimit-redis') {
    // 100 tokens leased per Redis round trip. Fail closed, so a Redis problem shows up as errors
    // instead of silently admitting without Redis (fail-open would measure nothing).
    config.redis = { url: opts.redisUrl };
    config.rateLimits = [{ ...bigLimit('redis'), batch: 100, failureMode: 'closed' }];
    route.rateLimits = ['bench'];
  }
  if (usesLbPorts(scenario)) {
    const cluster = {
      name: 'up',
      endpoints: LB_PORTS.map((p) => ({ address: `127.0.0.1:${p}` })),
      lb: { policy: 'round_robin' },
    };
    if (scenario === 'lb-lr') cluster.lb.policy = 'least_request';
    if (scenario === 'lb-lr-outlier' || scenario === 'full-chain') {
      cluster.lb.policy = 'least_request';
      // Envoy's defaults (consecutive 5xx, success rate, 10 % max ejection), evaluated every second so
      // that even short runs include several evaluations.
      cluster.outlierDetection = { interval: '1s' };
    }
    config.clusters = [cluster];
  }
  if (usesJwt(scenario)) {
    return keys.then(async ({ publicKey }) => {
      config.auth.jwtProviders[0].jwks.keys = [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES256' }];
      return config;
    });
  }
  return config;
}
