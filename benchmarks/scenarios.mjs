// Meridian configs for each benchmark scenario, and the material they need (a JWT, a certificate).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { SignJWT, generateKeyPair, exportJWK } from 'jose';

const keys = generateKeyPair('ES256');

/** A token for the jwt scenario, signed by the key whose public half is inline in the config. */
export async function jwtToken() {
  const { privateKey } = await keys;
  return new SignJWT({ sub: 'bench' }).setProtectedHeader({ alg: 'ES256', kid: 'bench' }).setIssuer('https://bench.local').setAudience('bench').setExpirationTime('2h').sign(privateKey);
}

/** A self-signed certificate for the https scenario (openssl CLI). */
export function selfSignedCert(dir) {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  return { cert, key };
}

/** One worker, access log off, one route to the shared upstream; the scenario adds its feature. */
export function meridianConfig(scenario, port, cert) {
  const route = { name: 'bench', match: { path: { prefix: '/' } }, cluster: 'up' };
  const config = {
    gateway: { name: `bench-${scenario}`, workers: 1, accessLog: { enabled: false } },
    admin: { address: '127.0.0.1:0' },
    listeners: [{ name: 'main', address: `127.0.0.1:${port}`, protocol: scenario === 'https' ? 'https' : 'http', ...(scenario === 'https' ? { tls: cert } : {}) }],
    routes: [route],
    clusters: [{ name: 'up', endpoints: [{ address: '127.0.0.1:18090' }] }],
  };
  if (scenario === 'jwt') {
    config.auth = { jwtProviders: [{ name: 'bench', issuer: 'https://bench.local', audiences: ['bench'], algorithms: ['ES256'], jwks: { keys: [] } }] };
    route.auth = ['bench'];
    return keys.then(async ({ publicKey }) => {
      config.auth.jwtProviders[0].jwks.keys = [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES256' }];
      return config;
    });
  }
  if (scenario === 'ratelimit-local') {
    // A limit far above the load, so the cost of deciding is measured, not refusals.
    config.rateLimits = [{ name: 'bench', key: [{ source: 'clientIp' }], limit: { requests: 10000000, per: '1s' }, store: 'local' }];
    route.rateLimits = ['bench'];
  }
  return config;
}
