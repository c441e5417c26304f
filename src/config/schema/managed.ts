import { Type } from '@sinclair/typebox';
import { Address, Duration, Name, Obj } from './common.js';

const TlsFiles = Obj({
  ca: Type.Optional(Type.String()),
  cert: Type.Optional(Type.String()),
  key: Type.Optional(Type.String()),
});

/** A gateway that follows a management server (hub): see docs/multicluster.md. */
export const ManagementServerSchema = Obj({
  url: Type.String({ pattern: '^https?://[^/]+/?$', errorMessage: 'expected http(s)://host:port' }),
  /**
   * Other replicas of the same hub (sharing one document, e.g. through etcd): when the one in use
   * fails, the gateway moves to the next, in order, round the list.
   */
  failoverUrls: Type.Optional(
    Type.Array(Type.String({ pattern: '^https?://[^/]+/?$', errorMessage: 'expected http(s)://host:port' }), {
      minItems: 1,
    }),
  ),
  /** Identity in the fleet; replicas of one gateway share it. Default: gateway.name. */
  id: Type.Optional(Name),
  token: Type.Optional(Type.String({ minLength: 1 })),
  /** Client TLS to the hub (mTLS when cert and key are set). */
  tls: Type.Optional(TlsFiles),
  reportInterval: Duration('10s'),
  /**
   * Obtain an X.509 SVID from the hub at start (a CSR: the key pair is made here and never sent); it
   * serves listeners with `tls.svid` and this gateway's mTLS to other clusters (east-west).
   */
  svid: Type.Optional(Type.Boolean()),
  eastWest: Type.Optional(
    Obj({
      /** Advertised host:port of this gateway's east-west listener. */
      address: Address,
      /** Credentials this gateway presents to other clusters' east-west gateways. */
      tls: Type.Optional(TlsFiles),
    }),
  ),
});

/** Replicas of one gateway sharing their config through Redis (no hub): see docs/multicluster.md. */
export const ConfigStoreSchema = Obj({
  url: Type.String({ pattern: '^rediss?://', errorMessage: 'expected redis://host:port or rediss://host:port' }),
  /** Key prefix; replicas sharing a config use the same one. Default: meridian:config:<gateway.name>. */
  key: Type.Optional(Type.String({ minLength: 1 })),
  passwordEnv: Type.Optional(Type.String()),
  timeout: Duration('1s'),
});
