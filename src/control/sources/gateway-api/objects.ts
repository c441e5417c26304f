/**
 * The Kubernetes objects the Gateway API source reads, as the API server serves them
 * (gateway.networking.k8s.io/v1; core v1 for Services and Secrets). Only the fields Meridian reads are
 * typed; everything is optional where the API lets it be absent.
 */

export interface ObjectMeta {
  name: string;
  namespace?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

export interface GatewayClass {
  metadata: ObjectMeta;
  spec: { controllerName: string };
}

export interface SecretObjectReference {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
}

export interface GatewayListener {
  name: string;
  hostname?: string;
  port: number;
  protocol: string;
  tls?: { mode?: 'Terminate' | 'Passthrough'; certificateRefs?: SecretObjectReference[] };
  allowedRoutes?: {
    namespaces?: { from?: 'Same' | 'All' | 'Selector'; selector?: { matchLabels?: Record<string, string> } };
    kinds?: Array<{ group?: string; kind: string }>;
  };
}

export interface Gateway {
  metadata: ObjectMeta;
  spec: { gatewayClassName: string; listeners: GatewayListener[]; addresses?: Array<{ type?: string; value: string }> };
  /** Read for the address this controller assigned before (kept across restarts). */
  status?: { addresses?: Array<{ type?: string; value: string }> };
}

export interface ParentReference {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface HTTPHeaderMatch {
  type?: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}

export interface HTTPRouteMatch {
  path?: { type?: 'Exact' | 'PathPrefix' | 'RegularExpression'; value?: string };
  headers?: HTTPHeaderMatch[];
  queryParams?: HTTPHeaderMatch[];
  method?: string;
}

export interface HTTPBackendRef {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  port?: number;
  weight?: number;
  /** Filters for requests sent to this backend (Extended): header modifiers only, see translate. */
  filters?: Array<{ type: string; [k: string]: unknown }>;
}

export interface HTTPRouteRule {
  name?: string;
  matches?: HTTPRouteMatch[];
  filters?: Array<{ type: string; [k: string]: unknown }>;
  backendRefs?: HTTPBackendRef[];
}

export interface HTTPRoute {
  metadata: ObjectMeta;
  spec: { parentRefs?: ParentReference[]; hostnames?: string[]; rules?: HTTPRouteRule[] };
}

export interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
}

export interface Service {
  metadata: ObjectMeta;
  spec: { type?: string; ports?: ServicePort[] };
}

export interface Secret {
  metadata: ObjectMeta;
  type?: string;
  data?: Record<string, string>;
}

export interface ReferenceGrant {
  metadata: ObjectMeta;
  spec: {
    from: Array<{ group: string; kind: string; namespace: string }>;
    to: Array<{ group: string; kind: string; name?: string }>;
  };
}

export interface Namespace {
  metadata: ObjectMeta;
}

/** Everything the translation reads, as listed from the API server. */
export interface GatewayApiObjects {
  gatewayClasses: GatewayClass[];
  gateways: Gateway[];
  httpRoutes: HTTPRoute[];
  services: Service[];
  secrets: Secret[];
  referenceGrants: ReferenceGrant[];
  namespaces: Namespace[];
}

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
