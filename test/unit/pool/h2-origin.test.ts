import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { H2Origin } from '../../../src/pool/h2-origin.js';

/** TCP sockets open in this test's process (the server's accepted ones and the origin's own). */
const tcpSockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;

describe('H2Origin', () => {
  let up: http2.Http2Server;
  let port: number;
  const sessions: http2.ServerHttp2Session[] = [];
  beforeAll(async () => {
    up = http2.createServer((req, res) => {
      // GOAWAY, then the response: Node's server never closes its side of the connection afterwards.
      req.stream.session!.goaway();
      res.end('bye');
    });
    up.on('session', (s) => sessions.push(s));
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    port = (up.address() as AddressInfo).port;
  });
  afterAll(async () => {
    // The server's half-open sessions never end by themselves: close() would wait for them forever.
    for (const s of sessions) s.destroy();
    await new Promise<void>((r) => up.close(() => r()));
  });

  it("cuts a retired session's connection when the peer keeps its side open (Envoy's delayed close, 1 s)", async () => {
    const origin = new H2Origin({ host: '127.0.0.1', port, connectTimeoutMs: 1000, keepAliveTimeoutMs: 60_000 });
    const before = tcpSockets();
    const r = await request(`http://127.0.0.1:${port}/x`, { dispatcher: origin });
    expect(await r.body.text()).toBe('bye');
    // Two while it lasts: the origin's socket and the server's accepted one.
    expect(tcpSockets()).toBe(before + 2);
    const deadline = Date.now() + 3000;
    while (tcpSockets() > before + 1 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    // The origin's socket is gone; the server's half-open one is the server's to close.
    expect(tcpSockets()).toBe(before + 1);
    await origin.close();
  });

  it("cuts an idle session's connection after keepAliveTimeout when the peer keeps its side open", async () => {
    // A plain HTTP/2 server closes its side once it reads our GOAWAY. Between it and the origin, a
    // relay that never half-closes toward the origin plays a peer that does not: what the origin's
    // graceful close leaves open, only the delayed cut can end.
    const plain = http2.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    const plainPort = (plain.address() as AddressInfo).port;
    const accepted: net.Socket[] = [];
    const relay = net.createServer({ allowHalfOpen: true }, (fromOrigin) => {
      accepted.push(fromOrigin);
      const toServer = net.connect({ host: '127.0.0.1', port: plainPort, allowHalfOpen: true });
      fromOrigin.pipe(toServer);
      toServer.pipe(fromOrigin, { end: false });
      fromOrigin.on('error', () => {});
      toServer.on('error', () => {});
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const relayPort = (relay.address() as AddressInfo).port;
    const origin = new H2Origin({
      host: '127.0.0.1',
      port: relayPort,
      connectTimeoutMs: 1000,
      keepAliveTimeoutMs: 300, // long enough that the count below is taken before it
    });
    const before = tcpSockets();
    const r = await request(`http://127.0.0.1:${relayPort}/x`, { dispatcher: origin });
    expect(await r.body.text()).toBe('ok');
    // Four while it lasts: the origin's socket, the relay's two and the server's accepted one.
    expect(tcpSockets()).toBe(before + 4);
    const idleAt = Date.now();
    const deadline = idleAt + 4000;
    while (tcpSockets() > before + 1 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    // Left: the relay's half-open socket toward the origin (the relay's to close). The origin's own
    // socket went at the cut, about 300 ms of keep-alive plus 1 s after the session closed.
    expect(tcpSockets()).toBe(before + 1);
    expect(Date.now() - idleAt).toBeGreaterThanOrEqual(1000);
    for (const s of accepted) s.destroy();
    await origin.close();
    await new Promise<void>((r) => relay.close(() => r()));
    await new Promise<void>((r) => plain.close(() => r()));
  });
});
