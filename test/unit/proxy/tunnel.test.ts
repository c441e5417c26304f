import { describe, it, expect, afterEach } from 'vitest';
import net, { type Socket } from 'node:net';
import { once } from 'node:events';
import { closeTunnel, openTunnel, switchingProtocolsHead } from '../../../src/proxy/tunnel.js';

const open: Array<net.Server | Socket> = [];
afterEach(() => {
  for (const o of open.splice(0)) o instanceof net.Server ? o.close() : o.destroy();
});

/** A connected pair of real loopback sockets: [the side the gateway holds, the far end]. */
async function socketPair(): Promise<[Socket, Socket]> {
  const server = net.createServer();
  open.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const far = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [near] = (await once(server, 'connection')) as [Socket];
  await once(far, 'connect');
  open.push(near, far);
  return [near, far];
}

function readUntil(s: Socket, text: string): Promise<string> {
  let got = '';
  return new Promise((resolve) => {
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes(text)) resolve(got);
    });
  });
}

describe('WebSocket tunnel', () => {
  it('the 101 head carries the upstream headers in order, ended by an empty line', () => {
    expect(switchingProtocolsHead(101, ['upgrade', 'websocket', 'connection', 'Upgrade'])).toBe(
      'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n',
    );
  });

  it('after the head, bytes flow both ways; the upstream closing reports it, closing closes both', async () => {
    const [client, clientFar] = await socketPair();
    const [upstream, upstreamFar] = await socketPair();
    let closed = 0;
    const head = switchingProtocolsHead(101, ['upgrade', 'websocket']);
    const headSeen = readUntil(clientFar, 'from upstream');
    openTunnel(client, upstream, head, () => closed++);
    upstreamFar.write('from upstream');
    expect(await headSeen).toBe(`${head}from upstream`);
    const upSeen = readUntil(upstreamFar, 'from client');
    clientFar.write('from client');
    expect(await upSeen).toBe('from client');
    const ended = Promise.all([once(clientFar, 'close'), once(upstreamFar, 'close')]);
    closeTunnel(client, upstream);
    await ended;
    await new Promise((r) => setImmediate(r));
    expect(closed).toBe(1);
  });
});
