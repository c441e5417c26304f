import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { request, Agent } from 'undici';
import { startInProcess, baseConfig, type InProcessGateway } from '../helpers/gateway.js';

/** Raw TCP upstreams that answer every request head with fixed bytes that are not a valid HTTP/1.1 response. */
const MALFORMED = {
  'bad-content-length': 'HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n',
  'not-http': 'HELLO\r\n\r\n',
  'bad-status': 'HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n',
} as const;

const servers: net.Server[] = [];
let gw: InProcessGateway;
const agent = new Agent({ keepAliveTimeout: 10 });

async function rawUpstream(reply: string): Promise<string> {
  const srv = net.createServer((sock) => {
    let head = '';
    sock.on('data', (d) => {
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) sock.end(reply);
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  servers.push(srv);
  return `127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  const routes = [];
  const clusters = [];
  for (const [name, reply] of Object.entries(MALFORMED)) {
    routes.push({ name, match: { path: { prefix: `/${name}` } }, cluster: name });
    clusters.push({ name, endpoints: [{ address: await rawUpstream(reply) }] });
  }
  gw = await startInProcess(baseConfig({ routes, clusters }));
});

afterAll(async () => {
  await gw?.stop();
  for (const s of servers) s.close();
  await agent.close();
});

describe('a malformed upstream response', () => {
  for (const name of Object.keys(MALFORMED)) {
    it(`answers 502 upstream_protocol_error when the upstream sends ${name}`, async () => {
      const r = await request(`${gw.url}/${name}`, { dispatcher: agent });
      expect(r.statusCode).toBe(502);
      expect(r.headers['x-meridian-error']).toBe('upstream_protocol_error');
      await r.body.dump();
    });
  }
});
