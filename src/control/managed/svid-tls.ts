import type { Config } from '../../config/schema/index.js';
import { clusterOf, gatewaySpiffeId } from '../../common/spiffe-id.js';
import type { ManagedResources } from '../../hub/protocol.js';
import type { GatewaySvid, SvidFiles } from './gateway-svid.js';

type ManagedCluster = ManagedResources['clusters'][number];

/**
 * The config workers run, with each `tls.svid` listener given the SVID's files: it serves the SVID
 * and trusts the bundle, and from there on is a file-based TLS listener like any other (reloads,
 * expiry metric). The stored config keeps `svid: true` as the operator wrote it.
 */
export function withSvidListeners(config: Config, files: SvidFiles): Config {
  if (!config.listeners.some((l) => l.tls?.svid)) return config;
  return {
    ...config,
    listeners: config.listeners.map((l) =>
      l.tls?.svid ? { ...l, tls: { ...l.tls, cert: files.cert, key: files.key, ca: files.bundle } } : l,
    ),
  };
}

/**
 * A cluster of other gateways' east-west listeners, reached with this gateway's SVID and trusting
 * only the bundle; each peer must present the SPIFFE ID of one of the gateways the hub put in the
 * cluster (their `gateway` and `cluster` endpoint labels), not merely any certificate of the mesh.
 */
export function eastWestSvidTls(cluster: ManagedCluster, svid: GatewaySvid): ManagedCluster {
  const endpoints = (cluster.endpoints ?? []) as Array<{ labels?: Record<string, string> }>;
  const peers = endpoints.flatMap(({ labels }) =>
    labels?.gateway
      ? [
          gatewaySpiffeId({
            trustDomain: svid.trustDomain,
            cluster: clusterOf(labels.gateway, labels),
            gatewayId: labels.gateway,
          }),
        ]
      : [],
  );
  const tls = cluster.upstreamTls as Record<string, unknown>;
  return {
    ...cluster,
    upstreamTls: {
      ...tls,
      // The serial-named copy: a renewed SVID gets new pools (see GatewaySvid.upstream).
      ca: svid.upstream.bundle,
      cert: svid.upstream.cert,
      key: svid.upstream.key,
      verifySubjectAltName: peers,
    },
  };
}
