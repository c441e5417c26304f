import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import https from 'node:https';
import http2 from 'node:http2';
import tls from 'node:tls';
import { copyFileSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { request, Agent } from 'undici';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { TestCa, pastWindow, futureWindow, type Issued } from '../helpers/pki.js';

let ca: TestCa;
let foreign: TestCa;
let serverCert: Issued;
let liveCert: Issued;
let gw: InProcessGateway;
let up: TestUpstream;
let tlsUp: https.Server;
let tlsUpSeenClientCert = false;

const SPIFFE_OPS = 'spiffe://prod.example/ns/ops/sa/x';

beforeAll(async () => {
  ca = new TestCa('Meridian Test CA');
  foreign = new TestCa('Foreign CA');
  serverCert = ca.server();
  // The listener reads these paths; the hot-reload test overwrites them.
  liveCert = ca.server();
  up = await startUpstream((req, res) =>
    res.end(JSON.stringify({ xfcc: req.headers['x-forwarded-client-cert'] ?? null })),
  );
  const upCert = ca.issue({
    cn: 'app',
    san: ['DNS:localhost', 'IP:127.0.0.1', 'URI:spiffe://prod.example/ns/app/sa/app'],
    eku: 'serverAuth',
  });
  tlsUp = https.createServer(
    { cert: upCert.certPem, key: upCert.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      tlsUpSeenClientCert = (req.socket as tls.TLSSocket).authorized;
      res.end('tls upstream');
    },
  );
  await new Promise<void>((r) => tlsUp.listen(0, '127.0.0.1', r));
  const tlsUpAddr = `127.0.0.1:${(tlsUp.address() as AddressInfo).port}`;
  const gwClient = ca.client('spiffe://prod.example/ns/gateway/sa/gw');
  gw = await startInProcess(
    baseConfig({
      listeners: [
        { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
        { name: 'tls', address: '127.0.0.1:0', protocol: 'https', tls: { cert: liveCert.cert, key: liveCert.key } },
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
            forwardClientCert: true,
          },
        },
        { name: 'passthrough', address: '127.0.0.1:0', protocol: 'tls-passthrough', routes: ['sni-app'] },
      ],
      routes: [
        { name: 'sni-app', match: { hosts: ['app.internal'] }, cluster: 'tls-up' },
        { name: 'up-tls-ok', match: { path: { prefix: '/upstream-tls-ok' } }, cluster: 'tls-up' },
        { name: 'up-tls-bad-san', match: { path: { prefix: '/upstream-tls-bad-san' } }, cluster: 'tls-up-wrong-san' },
        { name: 'all', match: { path: { prefix: '/' } }, cluster: 'up' },
      ],
      clusters: [
        { name: 'up', endpoints: [{ address: up.address }] },
        {
          name: 'tls-up',
          endpoints: [{ address: tlsUpAddr }],
          upstreamTls: {
            ca: ca.cert,
            cert: gwClient.cert,
            key: gwClient.key,
            verifySubjectAltName: ['spiffe://prod.example/ns/app/sa/app'],
          },
        },
        {
          name: 'tls-up-wrong-san',
          endpoints: [{ address: tlsUpAddr }],
          upstreamTls: { ca: ca.cert, verifySubjectAltName: ['spiffe://prod.example/ns/other/sa/x'] },
        },
      ],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  await up?.close();
  tlsUp?.close();
});

const addr = (name: string) => gw.gw.addresses.listeners[name];

function mtlsAgent(c?: Issued, trust = ca) {
  return new Agent({ connect: { ca: trust.certPem, cert: c?.certPem, key: c?.keyPem, servername: 'localhost' } });
}

async function mtlsGet(c?: Issued): Promise<{ status: number; body: string } | { error: string }> {
  const agent = mtlsAgent(c);
  try {
    const r = await request(`https://${addr('mtls')}/who`, { dispatcher: agent });
    return { status: r.statusCode, body: await r.body.text() };
  } catch (e) {
    return { error: (e as Error).message };
  } finally {
    await agent.close();
  }
}

describe('TLS termination', () => {
  it('serves HTTP/1.1 over TLS', async () => {
    const agent = mtlsAgent();
    const r = await request(`https://${addr('tls')}/x`, { dispatcher: agent });
    expect(r.statusCode).toBe(200);
    await r.body.dump();
    await agent.close();
  });

  it('negotiates HTTP/2 by ALPN', async () => {
    const client = http2.connect(`https://${addr('tls')}`, { ca: ca.certPem, servername: 'localhost' });
    const status = await new Promise<number>((resolve, reject) => {
      const s = client.request({ ':path': '/h2' });
      s.on('response', (h) => {
        s.resume();
        s.on('end', () => resolve(Number(h[':status'])));
      });
      s.on('error', reject);
      s.end();
    });
    expect((client.socket as tls.TLSSocket).alpnProtocol).toBe('h2');
    client.close();
    expect(status).toBe(200);
  });

  it('refuses TLS 1.1', async () => {
    const err = await new Promise<string>((resolve) => {
      const s = tls.connect({
        host: '127.0.0.1',
        port: Number(addr('tls').split(':')[1]),
        ca: ca.certPem,
        servername: 'localhost',
        minVersion: 'TLSv1',
        maxVersion: 'TLSv1.1',
      });
      s.on('secureConnect', () => {
        resolve('connected');
        s.destroy();
      });
      s.on('error', (e) => resolve(e.message));
    });
    expect(err).not.toBe('connected');
  });

  it('serves a replaced certificate to new handshakes while an open connection keeps working', async () => {
    const agent = mtlsAgent();
    const r1 = await request(`https://${addr('tls')}/before`, { dispatcher: agent });
    await r1.body.dump();
    const serialOf = () =>
      new Promise<string>((resolve, reject) => {
        const s = tls.connect(
          { host: '127.0.0.1', port: Number(addr('tls').split(':')[1]), ca: ca.certPem, servername: 'localhost' },
          () => {
            resolve(s.getPeerX509Certificate()!.serialNumber);
            s.destroy();
          },
        );
        s.on('error', reject);
      });
    const before = await serialOf();
    const next = ca.server();
    copyFileSync(next.cert, liveCert.cert);
    copyFileSync(next.key, liveCert.key);
    const nextSerial = new (await import('node:crypto')).X509Certificate(readFileSync(next.cert)).serialNumber;
    const end = Date.now() + 5000;
    let now = before;
    while (now !== nextSerial && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      now = await serialOf();
    }
    expect(now).toBe(nextSerial);
    // The connection opened before the reload still serves requests.
    const r2 = await request(`https://${addr('tls')}/after`, { dispatcher: agent });
    expect(r2.statusCode).toBe(200);
    await r2.body.dump();
    await agent.close();
  });
});

describe('certificate operations', () => {
  it('exports the expiry of every loaded certificate', async () => {
    const r = await request(`${gw.admin}/metrics`);
    const text = await r.body.text();
    const line = text
      .split('\n')
      .find((l) => l.startsWith('meridian_tls_cert_expiry_timestamp_seconds') && l.includes('listener="mtls"'));
    expect(line).toBeDefined();
    const expiry = Number(line!.split(' ').at(-1));
    expect(expiry).toBeGreaterThan(Date.now() / 1000);
    expect(expiry).toBeLessThan(Date.now() / 1000 + 2 * 86400);
  });

  it('reloads certificates on POST /certificates/reload', async () => {
    const r = await request(`${gw.admin}/certificates/reload`, { method: 'POST' });
    expect(r.statusCode).toBe(200);
    expect(await r.body.json()).toMatchObject({ reloaded: true, failed: [] });
  });
});

describe('mTLS with SPIFFE identities', () => {
  it('accepts a valid SVID and forwards the identity as x-forwarded-client-cert', async () => {
    const r = await mtlsGet(ca.client(SPIFFE_OPS));
    expect(r).toMatchObject({ status: 200 });
    const xfcc = JSON.parse((r as { body: string }).body).xfcc as string;
    expect(xfcc).toContain('Hash=');
  });

  const refusals: Array<[string, () => Issued | undefined]> = [
    ['no client certificate', () => undefined],
    ['an expired certificate', () => ca.client(SPIFFE_OPS, pastWindow())],
    ['a not-yet-valid certificate', () => ca.client(SPIFFE_OPS, futureWindow())],
    ['a certificate from a foreign CA', () => foreign.client(SPIFFE_OPS)],
    ['a leaf with CA:TRUE', () => ca.client(SPIFFE_OPS, { isCa: true })],
    ['a certificate without the clientAuth usage', () => ca.client(SPIFFE_OPS, { eku: 'serverAuth' })],
    ['an SVID from another trust domain', () => ca.client('spiffe://evil.example/ns/ops/sa/x')],
    ['a certificate without a SPIFFE ID', () => ca.client()],
  ];
  for (const [what, make] of refusals) {
    it(`refuses ${what} before any route`, async () => {
      const before = up.requests.length;
      const r = await mtlsGet(make());
      expect(r).toHaveProperty('error');
      expect(up.requests.length).toBe(before);
    });
  }
});

describe('upstream TLS origination', () => {
  it('talks mTLS to an upstream whose SAN is allowed', async () => {
    const r = await request(`${gw.url}/upstream-tls-ok`);
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('tls upstream');
    expect(tlsUpSeenClientCert).toBe(true);
  });

  it('answers 502 upstream_tls_error when the upstream SAN does not match', async () => {
    const r = await request(`${gw.url}/upstream-tls-bad-san`);
    expect(r.statusCode).toBe(502);
    expect(r.headers['x-meridian-error']).toBe('upstream_tls_error');
    await r.body.dump();
  });
});

describe('tls-passthrough', () => {
  it('routes raw TLS by SNI without terminating it', async () => {
    const [host, port] = addr('passthrough').split(':');
    const reply = await new Promise<string>((resolve, reject) => {
      const s = tls.connect(
        { host, port: Number(port), servername: 'app.internal', ca: ca.certPem, checkServerIdentity: () => undefined },
        () => {
          // The certificate is the upstream's own, proving the gateway did not terminate TLS.
          expect(s.getPeerX509Certificate()!.subjectAltName).toContain('spiffe://prod.example/ns/app/sa/app');
          s.write('GET / HTTP/1.1\r\nHost: app.internal\r\nConnection: close\r\n\r\n');
        },
      );
      let out = '';
      s.on('data', (d) => (out += d));
      s.on('end', () => resolve(out));
      s.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1.1 200/);
    expect(reply).toContain('tls upstream');
  });

  it('closes connections for an unknown SNI', async () => {
    const [host, port] = addr('passthrough').split(':');
    const result = await new Promise<string>((resolve) => {
      const s = tls.connect({ host, port: Number(port), servername: 'unknown.internal', ca: ca.certPem });
      s.on('secureConnect', () => resolve('connected'));
      s.on('error', () => resolve('refused'));
      s.on('close', () => resolve('refused'));
    });
    expect(result).toBe('refused');
  });
});
