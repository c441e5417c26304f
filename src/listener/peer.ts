import type { TLSSocket } from 'node:tls';
import type { Http2ServerRequest } from 'node:http2';
import type { ListenerConfig } from '../config/schema/index.js';
import type { PeerIdentity } from '../filters/filter.js';
import { peerIdentity } from './peer-identity.js';
import type { DownstreamRequest } from './downstream.js';

const cache = new WeakMap<TLSSocket, PeerIdentity | null>();

/**
 * The TLS socket under a request on an https listener. For HTTP/2 it is the session's socket, a
 * Proxy that forwards property reads (`authorized`, `getPeerX509Certificate`) to the TLS socket but
 * not `in` checks, so it is not feature-tested (every connection of an https listener is TLS).
 */
function tlsSocket(req: DownstreamRequest): TLSSocket | undefined {
  return (req.httpVersionMajor === 2 ? (req as Http2ServerRequest).stream.session?.socket : req.socket) as
    | TLSSocket
    | undefined;
}

/**
 * Peer identity per connection: extracted from the verified client certificate on first use and
 * cached on the TLS socket (HTTP/2: the session's socket), so later requests on the connection pay nothing.
 */
export function createPeerResolver(l: ListenerConfig): (req: DownstreamRequest) => PeerIdentity | undefined {
  if (l.protocol !== 'https') return () => undefined;
  return (req) => {
    const socket = tlsSocket(req);
    if (socket?.authorized !== true) return undefined;
    let id = cache.get(socket);
    if (id === undefined) {
      const cert = socket.getPeerX509Certificate();
      id = cert ? (peerIdentity(cert) ?? null) : null;
      cache.set(socket, id);
    }
    return id ?? undefined;
  };
}
