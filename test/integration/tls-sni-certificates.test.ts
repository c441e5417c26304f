import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http2 from 'node:http2';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { copyFileSync } from 'node:fs';
import { request, Agent } from 'undici';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { TestCa, type Issued } from '../helpers/pki.js';

/**
 * One https listener with a default certificate and `tls.certificates` entries chosen by SNI:
 * exact names (two on one entry, one in mixed case), a `*.apps.example.test` wildcard and an exact
 * name under that wildcard. Every certificate is issued at test time by one throwaway CA.
 */
let ca: TestCa;
let foreign: TestCa;
let certs: Record<'default' | 'api' | 'wild' | 'billing' | 'first' | 'second' | 'reload', Issued>;
let gw: InProcessGateway;
let up: TestUpstream;

const SPIFFE_OPS = 'spiffe://prod.example/ns/ops/sa/x';

beforeAll(async () => {
  ca = new TestCa('SNI Test CA');
  foreign = new TestCa('Foreign CA');
  const server = (cn: string, san: string[]) => ca.issue({ cn, san, eku: 'serverAuth' });
  certs = {
    default: ca.server(),
    api: server('api.example.test', ['DNS:api.example.test', 'DNS:api2.example.test']),
    wild: server('*.apps.example.test', ['DNS:*.apps.example.test']),
    billing: server('billing.apps.example.test', ['DNS:billing.apps.example.test']),
    first: server('first.example.test', ['DNS:first.example.test', 'IP:127.0.0.1']),
    second: server('second.example.test', ['DNS:second.example.test']),
    reload: server('reload.example.test', ['DNS:reload.example.test']),
  };
  up = await startUpstream((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        host: req.headers.host,
        route: req.headers['x-route'] ?? null,
        spiffe: req.headers['x-spiffe-id'] ?? null,
        path: req.url,
      }),
    );
  });
  const sniCerts = [
    { serverNames: ['api.example.test', 'API2.Example.Test'], cert: certs.api.cert, key: certs.api.key },
    { serverNames: ['*.apps.example.test'], cert: certs.wild.cert, key: certs.wild.key },
    { serverNames: ['billing.apps.example.test'], cert: certs.billing.cert, key: certs.billing.key },
    { serverNames: ['reload.example.test'], cert: certs.reload.cert, key: certs.reload.key },
  ];
  gw = await startInProcess(
    baseConfig({
      listeners: [
        {
          name: 'main',
          address: '127.0.0.1:0',
          protocol: 'https',
          tls: { cert: certs.default.cert, key: certs.default.key, certificates: sniCerts },
        },
        // No listener-level cert: the first entry is the default.
        {
          name: 'first',
          address: '127.0.0.1:0',
          protocol: 'https',
          tls: {
            certificates: [
              { serverNames: ['first.example.test'], cert: certs.first.cert, key: certs.first.key },
              { serverNames: ['second.example.test'], cert: certs.second.cert, key: certs.second.key },
            ],
          },
        },
        {
          name: 'mtls',
          address: '127.0.0.1:0',
          protocol: 'https',
          tls: {
            cert: certs.default.cert,
            key: certs.default.key,
            ca: ca.cert,
            requireClientCert: true,
            spiffe: { trustDomains: ['prod.example'] },
            certificates: [{ serverNames: ['api.example.test'], cert: certs.api.cert, key: certs.api.key }],
          },
        },
      ],
      routes: [
        {
          name: 'api',
          match: { hosts: ['api.example.test', 'api2.example.test'] },
          cluster: 'up',
          requestHeaders: { set: { 'x-route': 'api' } },
        },
        {
          name: 'billing',
          match: { hosts: ['billing.apps.example.test'] },
          cluster: 'up',
          requestHeaders: { set: { 'x-route': 'billing' } },
        },
        {
          name: 'apps',
          match: { hosts: ['*.apps.example.test'] },
          cluster: 'up',
          requestHeaders: { set: { 'x-route': 'apps' } },
        },
        {
          name: 'fallback',
          match: { path: { prefix: '/' } },
          cluster: 'up',
          requestHeaders: { set: { 'x-route': 'fallback' } },
        },
      ],
      clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
    }),
  );
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await up?.close();
});

const portOf = (listener: string) => Number(gw.gw.addresses.listeners[listener].split(':')[1]);
const fingerprint = (c: Issued) => new X509Certificate(c.certPem).fingerprint256;

interface Presented {
  fingerprint: string;
  subject: string;
  san: string | undefined;
  /** Chain AND host name (servername, or the IP without SNI) verified against the test CA. */
  authorized: boolean;
  authorizationError: string | undefined;
}

/** Handshake with `servername` (none when undefined) and report the certificate the gateway presented. */
function presented(
  servername: string | undefined,
  listener = 'main',
  extra: tls.ConnectionOptions = {},
): Promise<Presented> {
  return new Promise((resolve, reject) => {
    const s = tls.connect(
      {
        host: '127.0.0.1',
        port: portOf(listener),
        ca: ca.certPem,
        rejectUnauthorized: false,
        ALPNProtocols: ['http/1.1'],
        ...(servername === undefined ? {} : { servername }),
        ...extra,
      },
      () => {
        const cert = s.getPeerX509Certificate()!;
        resolve({
          fingerprint: cert.fingerprint256,
          subject: cert.subject,
          san: cert.subjectAltName,
          authorized: s.authorized,
          authorizationError: s.authorizationError ? String(s.authorizationError) : undefined,
        });
        s.destroy();
      },
    );
    s.setTimeout(5000, () => {
      s.destroy();
      reject(new Error('handshake timed out'));
    });
    s.on('error', reject);
  });
}

/** An HTTP/1.1 request through undici with SNI = Host = `name`, the server certificate verified for `name`. */
async function getVia(
  name: string,
  path: string,
  listener = 'main',
  client?: Issued,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const agent = new Agent({
    connect: { ca: ca.certPem, servername: name, cert: client?.certPem, key: client?.keyPem },
  });
  try {
    const r = await request(`https://127.0.0.1:${portOf(listener)}${path}`, {
      dispatcher: agent,
      headers: { host: name },
    });
    return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
  } finally {
    await agent.close();
  }
}

describe('certificate selection by SNI', () => {
  it('presents the default certificate when the client sends no SNI', async () => {
    const p = await presented(undefined);
    expect(p.fingerprint).toBe(fingerprint(certs.default));
    expect(p.subject).toBe('CN=localhost');
    expect(p.san).toContain('IP Address:127.0.0.1');
    expect(p.authorized).toBe(true);
  });

  it('presents the default certificate for a server name without an entry', async () => {
    for (const name of ['unknown.example.test', 'example.test', 'localhost', 'api.example.test.evil']) {
      const p = await presented(name);
      expect(p.fingerprint, name).toBe(fingerprint(certs.default));
    }
    // The default certificate is valid for localhost, and for nothing else asked above.
    expect((await presented('localhost')).authorized).toBe(true);
    expect((await presented('unknown.example.test')).authorizationError).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('presents the entry certificate for each of its exact server names, case-insensitively', async () => {
    for (const name of ['api.example.test', 'api2.example.test', 'API.Example.TEST']) {
      const p = await presented(name);
      expect(p.fingerprint, name).toBe(fingerprint(certs.api));
      expect(p.subject).toBe('CN=api.example.test');
      expect(p.san).toBe('DNS:api.example.test, DNS:api2.example.test');
      expect(p.authorized, name).toBe(true);
    }
  });

  it('a wildcard entry covers exactly one label below its suffix', async () => {
    for (const name of ['shop.apps.example.test', 'x-1.apps.example.test', 'SHOP.APPS.example.test']) {
      const p = await presented(name);
      expect(p.fingerprint, name).toBe(fingerprint(certs.wild));
      expect(p.subject).toBe('CN=*.apps.example.test');
      expect(p.authorized, name).toBe(true);
    }
    for (const name of ['apps.example.test', 'a.b.apps.example.test', 'shop.apps.example.test.other']) {
      expect((await presented(name)).fingerprint, name).toBe(fingerprint(certs.default));
    }
  });

  it('an exact name beats the wildcard that also covers it', async () => {
    const p = await presented('billing.apps.example.test');
    expect(p.fingerprint).toBe(fingerprint(certs.billing));
    expect(p.subject).toBe('CN=billing.apps.example.test');
    expect(p.authorized).toBe(true);
  });

  it('selects by SNI for TLS 1.2 handshakes too', async () => {
    const p12 = await presented('shop.apps.example.test', 'main', { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    expect(p12.fingerprint).toBe(fingerprint(certs.wild));
    const d12 = await presented(undefined, 'main', { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    expect(d12.fingerprint).toBe(fingerprint(certs.default));
  });

  it('without a listener certificate the first entry is the default for unknown names', async () => {
    expect((await presented('nobody.example.test', 'first')).fingerprint).toBe(fingerprint(certs.first));
    expect((await presented('second.example.test', 'first')).fingerprint).toBe(fingerprint(certs.second));
    expect((await presented('first.example.test', 'first')).fingerprint).toBe(fingerprint(certs.first));
  });

  // Node does not call SNICallback for a ClientHello without SNI: the base context is the default one.
  it('without a listener certificate the first entry is also presented when there is no SNI', async () => {
    expect((await presented(undefined, 'first')).fingerprint).toBe(fingerprint(certs.first));
  });
});

describe('requests through each server name', () => {
  it('answers HTTP/1.1 requests through every name, verified against the CA', async () => {
    const cases: Array<[string, string]> = [
      ['api.example.test', 'api'],
      ['api2.example.test', 'api'],
      ['shop.apps.example.test', 'apps'],
      ['billing.apps.example.test', 'billing'],
      ['localhost', 'fallback'],
    ];
    for (const [name, route] of cases) {
      const before = up.requests.length;
      const r = await getVia(name, `/via/${name}`);
      expect(r.status, name).toBe(200);
      expect(r.body).toMatchObject({ route, path: `/via/${name}` });
      expect(String(r.body.host)).toMatch(new RegExp(`^${name.replace(/\./g, '\\.')}(:\\d+)?$`));
      expect(up.requests.length).toBe(before + 1);
    }
  });

  it('a client verifying the server name refuses a name that only gets the default certificate', async () => {
    await expect(getVia('unknown.example.test', '/nope')).rejects.toThrow(
      /altnames|ERR_TLS_CERT_ALTNAME_INVALID|does not match/i,
    );
  });

  it('negotiates HTTP/2 by ALPN on an SNI certificate', async () => {
    const client = http2.connect(`https://127.0.0.1:${portOf('main')}`, {
      ca: ca.certPem,
      servername: 'shop.apps.example.test',
    });
    client.on('error', () => {});
    try {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const s = client.request({ ':path': '/h2', ':authority': 'shop.apps.example.test' });
        let body = '';
        let status = 0;
        s.setEncoding('utf8');
        s.on('response', (h) => (status = Number(h[':status'])));
        s.on('data', (d: string) => (body += d));
        s.on('end', () => resolve({ status, body }));
        s.on('error', reject);
        s.end();
      });
      const socket = client.socket as tls.TLSSocket;
      expect(socket.alpnProtocol).toBe('h2');
      expect(socket.getPeerX509Certificate()!.fingerprint256).toBe(fingerprint(certs.wild));
      expect(status).toBe(200);
      expect(JSON.parse(body)).toMatchObject({ route: 'apps', path: '/h2' });
    } finally {
      client.close();
    }
  });

  it('routes by Host, not by SNI: the certificate follows SNI, the route follows Host', async () => {
    const agent = new Agent({ connect: { ca: ca.certPem, servername: 'api.example.test' } });
    try {
      const r = await request(`https://127.0.0.1:${portOf('main')}/mixed`, {
        dispatcher: agent,
        headers: { host: 'shop.apps.example.test' },
      });
      expect(r.statusCode).toBe(200);
      expect(await r.body.json()).toMatchObject({ route: 'apps', host: 'shop.apps.example.test' });
    } finally {
      await agent.close();
    }
  });
});

describe('mTLS with SNI certificates', () => {
  it('still requires and verifies the client certificate when an SNI entry was selected', async () => {
    const client = ca.client(SPIFFE_OPS);
    const p = await presented('api.example.test', 'mtls', { cert: client.certPem, key: client.keyPem });
    expect(p.fingerprint).toBe(fingerprint(certs.api));
    expect((await presented(undefined, 'mtls', { cert: client.certPem, key: client.keyPem })).fingerprint).toBe(
      fingerprint(certs.default),
    );
    const ok = await getVia('api.example.test', '/m', 'mtls', client);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ route: 'api', spiffe: SPIFFE_OPS });
    const before = up.requests.length;
    await expect(getVia('api.example.test', '/m', 'mtls')).rejects.toThrow();
    await expect(getVia('api.example.test', '/m', 'mtls', foreign.client(SPIFFE_OPS))).rejects.toThrow();
    expect(up.requests.length).toBe(before);
  });
});

describe('reload', () => {
  it('POST /certificates/reload swaps an SNI certificate for new handshakes; other names keep theirs', async () => {
    const before = await presented('reload.example.test');
    expect(before.fingerprint).toBe(fingerprint(certs.reload));
    const next = ca.issue({ cn: 'reload.example.test', san: ['DNS:reload.example.test'], eku: 'serverAuth' });
    copyFileSync(next.cert, certs.reload.cert);
    copyFileSync(next.key, certs.reload.key);
    const r = await request(`${gw.admin}/certificates/reload`, { method: 'POST' });
    expect(r.statusCode).toBe(200);
    expect(await r.body.json()).toMatchObject({ reloaded: true, failed: [] });
    // The file watcher may also reload (debounced); poll for a bounded time.
    const end = Date.now() + 5000;
    let now = await presented('reload.example.test');
    while (now.fingerprint !== fingerprint(next) && Date.now() < end) {
      await new Promise((res) => setTimeout(res, 100));
      now = await presented('reload.example.test');
    }
    expect(now.fingerprint).toBe(fingerprint(next));
    expect(now.authorized).toBe(true);
    expect((await presented('api.example.test')).fingerprint).toBe(fingerprint(certs.api));
    expect((await presented(undefined)).fingerprint).toBe(fingerprint(certs.default));
    expect((await getVia('reload.example.test', '/after-reload')).status).toBe(200);
    // The reload also gave the certificate-less listener its base context: no-SNI handshakes now work.
    expect((await presented(undefined, 'first')).fingerprint).toBe(fingerprint(certs.first));
  });
});
