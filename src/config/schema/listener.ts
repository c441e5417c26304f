import { Type } from '@sinclair/typebox';
import { Address, Name, Obj } from './common.js';

const TlsVersion = Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], {
  errorMessage: 'expected TLSv1.2 or TLSv1.3',
});

export const ListenerTlsSchema = Obj({
  cert: Type.Optional(Type.String()),
  key: Type.Optional(Type.String()),
  ca: Type.Optional(Type.String()),
  /** Serve the SVID the hub issued this gateway and trust the hub's bundle (managementServer.svid), instead of files. */
  svid: Type.Optional(Type.Boolean()),
  /**
   * Gateway ids whose mesh SVIDs (spiffe://<trust-domain>/cluster/<c>/gateway/<id>) are refused at
   * the handshake, and whose open connections are closed. A managed gateway fills it on its `svid`
   * listeners from the hub's revocations; it changes in place, without replacing the listener.
   */
  revokedGateways: Type.Optional(Type.Array(Name)),
  requireClientCert: Type.Boolean({ default: false }),
  minVersion: Type.Optional(TlsVersion),
  ciphers: Type.Optional(Type.String()),
  alpn: Type.Optional(Type.Array(Type.String())),
  spiffe: Type.Optional(Obj({ trustDomains: Type.Array(Type.String(), { minItems: 1 }) })),
  certificates: Type.Optional(
    Type.Array(
      Obj({ serverNames: Type.Array(Type.String(), { minItems: 1 }), cert: Type.String(), key: Type.String() }),
    ),
  ),
  forwardClientCert: Type.Boolean({ default: false, description: 'send x-forwarded-client-cert upstream' }),
});

export const ListenerSchema = Obj({
  name: Name,
  address: Address,
  protocol: Type.Union([Type.Literal('http'), Type.Literal('https'), Type.Literal('tls-passthrough')], {
    default: 'http',
    errorMessage: 'expected http, https or tls-passthrough',
  }),
  h2c: Type.Boolean({ default: true, description: 'accept HTTP/2 with prior knowledge on plain http' }),
  tls: Type.Optional(ListenerTlsSchema),
  routes: Type.Optional(Type.Array(Name)),
});
