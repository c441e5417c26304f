import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http, { type IncomingMessage } from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { SignJWT, generateKeyPair, exportJWK, type KeyLike } from 'jose';
import { WebSocketServer, WebSocket } from 'ws';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';
import { TestCa, type Issued } from '../helpers/pki.js';

/**
 * WebSocket / Upgrade requests go through the same route filters as plain requests: authn (JWT,
 * API key), RBAC (claims, SPIFFE ID) and rate limits, with the same identity headers upstream.
 */

const ISS = 'https://issuer.test';
const SPIFFE_OPS = 'spiffe://prod.example/ns/ops/sa/x';
let gw: InProcessGateway;
let wsServer: http.Server;
let ca: TestCa;
let es: { privateKey: KeyLike; publicKey: KeyLike };
/** Every upgrade request the upstream accepted. */
const seen: IncomingMessage[] = [];

async function token(roles: string[] = ['user'], sub = 'alice') {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ roles })
    .setProtectedHeader({ alg: 'ES256', kid: 'es1' })
    .setIssuer(ISS)
    .setAudience('api')
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(es.privateKey);
}

beforeAll(async () => {
  es = await generateKeyPair('ES256');
  ca = new TestCa('Upgrade Test CA');
  const serverCert = ca.server();
  wsServer = http.createServer((_req, res) => res.end('plain'));
  const wss = new WebSocketServer({ server: wsServer });
  wss.on('connection', (ws, req) => {
    seen.push(req);
    ws.on('message', (m) => ws.send(`echo:${String(m)}`));
  });
  await new Promise<void>((r) => wsServer.listen(0, '127.0.0.1', r));
  const upstream = `127.0.0.1:${(wsServer.address() as AddressInfo).port}`;
  gw = await startInProcess(
    baseConfig({
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
            forwardClientCert: true,
          },
        },
      ],
      auth: {
        jwtProviders: [
          {
            name: 'main',
            issuer: ISS,
            audiences: ['api'],
            algorithms: ['ES256'],
            jwks: { keys: [{ ...(await exportJWK(es.publicKey)), kid: 'es1', alg: 'ES256' }] },
            forwardClaims: { sub: 'x-user-id' },
          },
        ],
        apiKeys: [
          {
            name: 'partners',
            header: 'x-api-key',
            keys: [{ consumer: 'acme', sha256: createHash('sha256').update('secret-key-1').digest('hex') }],
          },
        ],
      },
      rbac: [
        { name: 'admins', rules: [{ action: 'allow', principals: [{ claim: { name: 'roles', contains: 'admin' } }] }] },
        { name: 'ops', rules: [{ action: 'allow', principals: [{ spiffeId: 'spiffe://prod.example/ns/ops/*' }] }] },
      ],
      rateLimits: [{ name: 'ws-rl', key: [{ source: 'route' }], limit: { requests: 2, per: '60s' } }],
      routes: [
        { name: 'ws-jwt', match: { path: { prefix: '/ws/jwt' } }, cluster: 'ws', auth: ['main'] },
        { name: 'ws-key', match: { path: { prefix: '/ws/key' } }, cluster: 'ws', auth: ['partners'] },
        { name: 'ws-admin', match: { path: { prefix: '/ws/admin' } }, cluster: 'ws', auth: ['main'], rbac: 'admins' },
        { name: 'ws-ops', match: { path: { prefix: '/ws/ops' } }, cluster: 'ws', rbac: 'ops' },
        { name: 'ws-rl', match: { path: { prefix: '/ws/rl' } }, cluster: 'ws', rateLimits: ['ws-rl'] },
        {
          name: 'ws-rewrite',
          match: { path: { prefix: '/ws/old' } },
          cluster: 'ws',
          rewrite: { pathPrefix: '/ws/new' },
        },
        { name: 'ws-open', match: { path: { prefix: '/ws' } }, cluster: 'ws' },
      ],
      clusters: [{ name: 'ws', endpoints: [{ address: upstream }] }],
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  wsServer?.closeAllConnections();
  await new Promise((r) => wsServer?.close(r));
});

interface RawAnswer {
  status: number;
  head: string;
  body: string;
  /** The gateway closed the connection after its answer. */
  closed: boolean;
}

/** Send a WebSocket upgrade over a raw socket and read everything until the gateway closes it. */
function rawUpgrade(path: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(gw.url.split(':').pop()), '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      finish(false);
    }, 3000);
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      const [head, body = ''] = data.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), head: head.toLowerCase(), body, closed });
    };
    sock.on('data', (d) => {
      data += d.toString('latin1');
    });
    sock.on('error', reject);
    sock.on('close', () => finish(true));
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    sock.write(
      `GET ${path} HTTP/1.1\r\nhost: gw.test\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`,
    );
  });
}

/** Open a WebSocket through the gateway, exchange one message, close; returns what the upstream saw. */
async function roundTrip(url: string, opts: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<IncomingMessage> {
  const before = seen.length;
  const ws = new WebSocket(url, opts);
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
    ws.once('unexpected-response', (_q, res) => j(new Error(`status ${res.statusCode}`)));
  });
  const reply = new Promise<string>((r) => ws.once('message', (m) => r(String(m))));
  ws.send('hi');
  expect(await reply).toBe('echo:hi');
  ws.close();
  expect(seen.length).toBe(before + 1);
  return seen[seen.length - 1];
}

const wsUrl = (path: string) => `${gw.url.replace('http', 'ws')}${path}`;

describe('upgrade requests run the route filters', () => {
  it('refuses an upgrade without a token with 401 on the socket, then closes it, without reaching the upstream', async () => {
    const before = seen.length;
    const r = await rawUpgrade('/ws/jwt');
    expect(r.status).toBe(401);
    expect(r.head).toContain('www-authenticate: bearer realm="meridian"');
    expect(r.head).toContain('x-meridian-error: unauthenticated');
    expect(r.body).toBe('unauthenticated\n');
    expect(r.closed).toBe(true);
    expect(seen.length).toBe(before);
  });

  it('refuses an invalid token with 401', async () => {
    const r = await rawUpgrade('/ws/jwt', { authorization: 'Bearer not.a.jwt' });
    expect(r.status).toBe(401);
    expect(r.head).toContain('error="invalid_token"');
    expect(r.closed).toBe(true);
  });

  it('lets a valid token through, forwards its claims and strips the token and client-sent identity headers', async () => {
    const req = await roundTrip(wsUrl('/ws/jwt/chat'), {
      headers: {
        authorization: `Bearer ${await token()}`,
        'x-user-id': 'mallory',
        'x-forwarded-client-cert': 'Hash=forged',
      },
    });
    expect(req.headers['x-user-id']).toBe('alice');
    expect(req.headers.authorization).toBeUndefined();
    expect(req.headers['x-forwarded-client-cert']).toBeUndefined();
    expect(req.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(req.headers.traceparent).toBeUndefined(); // no gateway.tracing: none is invented
  });

  it('authenticates API keys and strips the key', async () => {
    expect((await rawUpgrade('/ws/key', { 'x-api-key': 'wrong' })).status).toBe(401);
    const req = await roundTrip(wsUrl('/ws/key'), { headers: { 'x-api-key': 'secret-key-1' } });
    expect(req.headers['x-api-key']).toBeUndefined();
  });

  it('applies RBAC: 403 for an authenticated user without the role, 101 for an admin', async () => {
    const before = seen.length;
    const r = await rawUpgrade('/ws/admin', { authorization: `Bearer ${await token(['user'])}` });
    expect(r.status).toBe(403);
    expect(r.body).toBe('forbidden\n');
    expect(r.closed).toBe(true);
    expect(seen.length).toBe(before);
    const req = await roundTrip(wsUrl('/ws/admin'), {
      headers: { authorization: `Bearer ${await token(['admin'], 'root')}` },
    });
    expect(req.headers['x-user-id']).toBe('root');
  });

  it('rate-limits upgrades: 429 once the limit is used', async () => {
    await roundTrip(wsUrl('/ws/rl'));
    await roundTrip(wsUrl('/ws/rl'));
    const before = seen.length;
    const r = await rawUpgrade('/ws/rl');
    expect(r.status).toBe(429);
    expect(r.head).toContain('x-meridian-error: rate_limited');
    expect(r.head).toMatch(/retry-after: \d+/);
    expect(r.closed).toBe(true);
    expect(seen.length).toBe(before);
  });

  it('counts refused upgrades in the route metrics', async () => {
    const metric = async () => {
      const text = await (await fetch(`${gw.admin}/metrics`)).text();
      return Number(/meridian_downstream_rq_total\{route="ws-admin",status_class="4xx"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    const before = await metric();
    await rawUpgrade('/ws/admin');
    expect(await metric()).toBe(before + 1);
  });

  it('forwards the normalized, rewritten path (the path RBAC judged), not the raw request target', async () => {
    const req = await roundTrip(wsUrl('/ws/x/../old/%61b?q=1'));
    expect(req.url).toBe('/ws/new/ab?q=1');
  });

  describe('mTLS', () => {
    const mtlsUrl = () => `wss://${gw.gw.addresses.listeners.mtls}/ws/ops`;
    const tlsOpts = (c: Issued) => ({ ca: ca.certPem, cert: c.certPem, key: c.keyPem, servername: 'localhost' });

    it('forwards the verified client certificate (SPIFFE ID) as x-forwarded-client-cert on the upgrade', async () => {
      const req = await roundTrip(mtlsUrl(), tlsOpts(ca.client(SPIFFE_OPS)));
      expect(req.headers['x-forwarded-client-cert']).toContain(`URI=${SPIFFE_OPS}`);
    });

    it('refuses an SVID the RBAC policy does not allow with 403', async () => {
      const ws = new WebSocket(mtlsUrl(), tlsOpts(ca.client('spiffe://prod.example/ns/app/sa/y')));
      const status = await new Promise<number>((r, j) => {
        ws.once('unexpected-response', (_q, res) => r(res.statusCode!));
        ws.once('open', () => j(new Error('upgrade was allowed')));
        ws.once('error', j);
      });
      expect(status).toBe(403);
    });
  });
});
