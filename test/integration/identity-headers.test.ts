import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http2 from 'node:http2';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { request, Agent } from 'undici';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { TestCa, type Issued } from '../helpers/pki.js';

/**
 * Identity headers (docs/security.md): `x-real-ip`, `x-spiffe-id`, `x-forwarded-client-cert` and the
 * configured consumer / claim headers are never taken from the client; the gateway sets them from
 * what it verified: the client IP, the client certificate's SPIFFE ID, the API key's consumer.
 */

const SPIFFE_OPS = 'spiffe://prod.example/ns/ops/sa/x';
const FORGED = {
  'x-real-ip': '198.51.100.66',
  'x-spiffe-id': 'spiffe://prod.example/ns/admin/sa/root',
  'x-consumer': 'root',
  'x-forwarded-client-cert': 'Hash=forged',
  'x-user-id': 'root',
};

let ca: TestCa;
let up: TestUpstream;
let edge: InProcessGateway;
let behindProxy: InProcessGateway;

function config(trustForwardedHeaders: boolean, serverCert: Issued) {
  return baseConfig({
    gateway: { name: 'identity', workers: 1, trustForwardedHeaders, accessLog: { enabled: false } },
    listeners: [
      { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
      {
        name: 'mtls',
        address: '127.0.0.1:0',
        protocol: 'https',
        tls: {
          cert: serverCert.cert,
          key: serverCert.key,
          ca: ca.cert,
          requireClientCert: true,
          spiffe: { trustDomains: ['prod.example'] },
        },
      },
      {
        name: 'mtls-any',
        address: '127.0.0.1:0',
        protocol: 'https',
        tls: {
          cert: serverCert.cert,
          key: serverCert.key,
          ca: ca.cert,
          requireClientCert: true,
          forwardClientCert: true,
        },
      },
    ],
    auth: {
      jwtProviders: [
        {
          name: 'jwt',
          issuer: 'https://issuer.test',
          jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0', alg: 'HS256' }] },
          algorithms: ['HS256'],
          forwardClaims: { sub: 'x-user-id' },
        },
      ],
      apiKeys: [
        {
          name: 'partners',
          header: 'x-api-key',
          consumerHeader: 'x-consumer',
          keys: [{ consumer: 'acme', sha256: createHash('sha256').update('key-1').digest('hex') }],
        },
      ],
    },
    routes: [
      { name: 'keyed', match: { path: { prefix: '/keyed' } }, cluster: 'up', auth: ['partners'] },
      { name: 'open', match: { path: { prefix: '/' } }, cluster: 'up' },
    ],
    clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
  });
}

beforeAll(async () => {
  ca = new TestCa('Identity Test CA');
  const serverCert = ca.server();
  up = await startUpstream((_req, res) => res.end('ok'));
  edge = await startInProcess(config(false, serverCert));
  behindProxy = await startInProcess(config(true, serverCert));
});

afterAll(async () => {
  await edge?.stop();
  await behindProxy?.stop();
  await up?.close();
});

/** GET through the gateway; returns the headers the upstream received. */
async function seen(url: string, headers: Record<string, string>, dispatcher?: Agent) {
  const before = up.requests.length;
  const r = await request(url, { headers, dispatcher });
  expect(r.statusCode).toBe(200);
  await r.body.dump();
  expect(up.requests.length).toBe(before + 1);
  return up.requests.at(-1)!.headers;
}

function mtlsAgent(c: Issued) {
  return new Agent({ connect: { ca: ca.certPem, cert: c.certPem, key: c.keyPem, servername: 'localhost' } });
}

describe('x-real-ip', () => {
  it('is the TCP peer at the edge, whatever the client sent', async () => {
    const h = await seen(`${edge.url}/x`, { ...FORGED, 'x-forwarded-for': '203.0.113.9' });
    expect(h['x-real-ip']).toBe('127.0.0.1');
  });

  it('is the right-most X-Forwarded-For entry behind a trusted proxy', async () => {
    const h = await seen(`${behindProxy.url}/x`, { ...FORGED, 'x-forwarded-for': '198.51.100.1, 203.0.113.9' });
    expect(h['x-real-ip']).toBe('203.0.113.9');
  });

  it('is set on raw HTTP/1.1 requests that repeat the header', async () => {
    const before = up.requests.length;
    const reply = await new Promise<string>((resolve) => {
      const s = net.connect(Number(edge.url.split(':').at(-1)), '127.0.0.1');
      let out = '';
      s.on('data', (d) => (out += d.toString('latin1')));
      s.on('close', () => resolve(out));
      s.write(
        'GET /raw HTTP/1.1\r\nHost: gw.test\r\nX-Real-IP: 10.0.0.1\r\nX-Real-IP: 10.0.0.2\r\nConnection: close\r\n\r\n',
      );
    });
    expect(reply).toMatch(/^HTTP\/1.1 200/);
    expect(up.requests.length).toBe(before + 1);
    expect(
      up.requests.at(-1)!.rawHeaders.filter((_, i, a) => i % 2 === 0 && a[i].toLowerCase() === 'x-real-ip'),
    ).toHaveLength(1);
    expect(up.requests.at(-1)!.headers['x-real-ip']).toBe('127.0.0.1');
  });
});

describe('x-spiffe-id', () => {
  it('is never taken from the client on a plain listener', async () => {
    const h = await seen(`${edge.url}/x`, FORGED);
    expect(h['x-spiffe-id']).toBeUndefined();
    expect(h['x-forwarded-client-cert']).toBeUndefined();
  });

  it('carries the verified client certificate SPIFFE ID (HTTP/1.1 over mTLS)', async () => {
    const agent = mtlsAgent(ca.client(SPIFFE_OPS));
    try {
      const h = await seen(`https://${edge.gw.addresses.listeners.mtls}/x`, FORGED, agent);
      expect(h['x-spiffe-id']).toBe(SPIFFE_OPS);
      // forwardClientCert is off on this listener: no XFCC, and the forged one is gone.
      expect(h['x-forwarded-client-cert']).toBeUndefined();
      expect(h['x-real-ip']).toBe('127.0.0.1');
    } finally {
      await agent.close();
    }
  });

  it('carries the verified client certificate SPIFFE ID (HTTP/2 over mTLS)', async () => {
    const c = ca.client(SPIFFE_OPS);
    const session = http2.connect(`https://${edge.gw.addresses.listeners.mtls}`, {
      ca: ca.certPem,
      cert: c.certPem,
      key: c.keyPem,
      servername: 'localhost',
    });
    try {
      const before = up.requests.length;
      const status = await new Promise<number>((resolve, reject) => {
        const s = session.request({ ':path': '/h2', ...FORGED });
        s.on('response', (h) => resolve(Number(h[':status'])));
        s.on('error', reject);
        s.resume();
        s.end();
      });
      expect(status).toBe(200);
      expect(up.requests.length).toBe(before + 1);
      expect(up.requests.at(-1)!.headers['x-spiffe-id']).toBe(SPIFFE_OPS);
    } finally {
      session.close();
    }
  });

  it('is absent when the verified certificate has no SPIFFE ID, even if the client sent one', async () => {
    const agent = mtlsAgent(ca.client(undefined, { san: ['DNS:client.example'] }));
    try {
      const h = await seen(`https://${edge.gw.addresses.listeners['mtls-any']}/x`, FORGED, agent);
      expect(h['x-spiffe-id']).toBeUndefined();
      // This listener forwards the certificate: the gateway's XFCC, not the client's.
      expect(h['x-forwarded-client-cert']).toMatch(/^Hash=[0-9a-f]{64};.*DNS=client\.example/);
    } finally {
      await agent.close();
    }
  });
});

describe('consumer and claim headers', () => {
  it('forwards the verified API key consumer in the configured header and strips the key', async () => {
    const h = await seen(`${edge.url}/keyed`, { ...FORGED, 'x-api-key': 'key-1' });
    expect(h['x-consumer']).toBe('acme');
    expect(h['x-api-key']).toBeUndefined();
  });

  it('strips client-sent consumer and claim headers on routes without auth', async () => {
    const h = await seen(`${edge.url}/open`, FORGED);
    expect(h['x-consumer']).toBeUndefined();
    expect(h['x-user-id']).toBeUndefined();
  });
});
