/**
 * The SPIFFE ID of a gateway in a fleet: `spiffe://<trust-domain>/cluster/<cluster>/gateway/<id>`.
 * The cluster comes first so that RBAC can grant a whole cluster with one glob
 * (`spiffe://mesh.example/cluster/c-a/*`); the gateway id is the last segment, which is what the
 * hub's certificatePrincipal reads as the gateway a certificate speaks for. `<cluster>` is the
 * gateway's `cluster` label, or its id when it has none.
 */

/** What a gateway SPIFFE ID names. */
export interface GatewayIdentity {
  trustDomain: string;
  cluster: string;
  gatewayId: string;
}

/** SPIFFE trust domain: lowercase letters, digits, dots, dashes and underscores (SPIFFE ID spec 2.1). */
export const TRUST_DOMAIN_PATTERN = '^[a-z0-9._-]{1,255}$';
/** A path segment we issue: a config Name (letters, digits, "_", "-", "."; no "." or ".." alone). */
const SEGMENT = '[A-Za-z0-9][A-Za-z0-9_.-]{0,127}';
const GATEWAY_ID_RE = new RegExp(`^spiffe://([a-z0-9._-]{1,255})/cluster/(${SEGMENT})/gateway/(${SEGMENT})$`);

/** `spiffe://mesh.example/cluster/c-a/gateway/gw-1` for trust domain mesh.example, cluster c-a, gateway gw-1. */
export function gatewaySpiffeId(id: GatewayIdentity): string {
  return `spiffe://${id.trustDomain}/cluster/${id.cluster}/gateway/${id.gatewayId}`;
}

/** The parts of a gateway SPIFFE ID, or undefined for any other URI. */
export function parseGatewaySpiffeId(uri: string): GatewayIdentity | undefined {
  const m = GATEWAY_ID_RE.exec(uri);
  return m ? { trustDomain: m[1], cluster: m[2], gatewayId: m[3] } : undefined;
}

/** The cluster segment of a gateway's SPIFFE ID: its `cluster` label, or its id when it has none. */
export function clusterOf(gatewayId: string, labels: Readonly<Record<string, string>> | undefined): string {
  return labels?.cluster || gatewayId;
}
