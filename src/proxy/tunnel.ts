import type { Duplex } from 'node:stream';

/**
 * An upgraded connection (WebSocket and other HTTP/1.1 Upgrades): once the upstream answered 101, the
 * gateway writes the 101 head to the client and pipes the two sockets together; either side closing
 * closes the other. Bytes are counted by the client socket's bytesWritten.
 */

/** The 101 response head for the client, from the upstream's headers (already filtered), flat. */
export function switchingProtocolsHead(status: number, headers: readonly string[]): string {
  let head = `HTTP/1.1 ${status} Switching Protocols\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/** Write the head and join the sockets; `onClose` runs when the upstream closes (the client's close is the caller's). */
export function openTunnel(client: Duplex, upstream: Duplex, head: string, onClose: () => void): void {
  client.write(head);
  upstream.once('close', onClose);
  upstream.pipe(client).pipe(upstream);
}

/** Close both sides of a tunnel. */
export function closeTunnel(client: Duplex, upstream: Duplex): void {
  upstream.destroy();
  client.destroy();
}
