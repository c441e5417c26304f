import type { TLSSocket } from 'node:tls';
import type { ListenerConfig } from '../config/schema/index.js';
import type { PeerIdentity } from '../filters/filter.js';
import type { DownstreamRequest } from '../proxy/request-scan.js';
import { tlsSocketOf } from './servers.js';
import { peerIdentity } from './peer-identity.js';

const cache = new WeakMap<TLSSocket, PeerIdentity | null>();

/**
 * Peer identity per connection: extracted from the verified client certificate on first use and
 * cached on the TLS socket, so later requests on the connection pay nothing.
 */
export function createPeerResolver(l: ListenerConfig): (req: DownstreamRequest) => PeerIdentity | undefined {
  if (l.protocol !== 'https') return () => undefined;
  return (req) => {
    const socket = tlsSocketOf(req);
    if (!socket || !socket.authorized) return undefined;
    let id = cache.get(socket);
    if (id === undefined) {
      const cert = socket.getPeerX509Certificate();
      id = cert ? (peerIdentity(cert) ?? null) : null;
      cache.set(socket, id);
    }
    return id ?? undefined;
  };
}
