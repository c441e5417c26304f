import type { ErrorCode } from '../common/errors.js';

/** Identity of the TLS peer, extracted once per connection from a verified client certificate. */
export interface PeerIdentity {
  subject: string;
  dnsNames: string[];
  uris: string[];
  /** The single spiffe:// URI SAN, when present. */
  spiffeId?: string;
  /** SHA-256 of the DER certificate, hex (used for XFCC `Hash=`). */
  fingerprint: string;
}

/**
 * What a filter sees of one request. Built once per request by the proxy; filters read it and
 * record what they learned (claims, consumer) and what to add to the upstream request.
 */
export interface RequestContext {
  readonly method: string;
  /** Normalized path, without the query string. */
  readonly path: string;
  /** Raw query string including the leading '?', or ''. */
  readonly query: string;
  readonly authority: string;
  /** Downstream headers, lowercase names, null-prototype object (node's req.headers). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Client IP after trusted-proxy handling. */
  readonly clientIp: string;
  readonly peer: PeerIdentity | undefined;
  readonly routeName: string;
  readonly requestId: string;
  /** Verified JWT claims (set by the JWT authn filter). */
  claims?: Record<string, unknown>;
  /** API-key consumer name (set by the API-key authn filter). */
  consumer?: string;
  consumerMetadata?: Readonly<Record<string, string>>;
  /** Headers to set on the upstream request, flat [name, value, name, value, ...]. */
  upstreamHeaders: string[];
  /** Lowercase header names to remove from the upstream request. */
  upstreamStrip: string[];
  /** Cookie names to remove from the upstream Cookie header (credentials read from cookies). */
  upstreamStripCookies?: readonly string[];
  /** Query parameter names to remove from the upstream query string (credentials read from the query). */
  upstreamStripQuery?: readonly string[];
  /** Headers to add to the downstream response, flat [name, value, ...]. */
  responseHeaders: string[];
}

/** A filter's own answer to the client: the request is not forwarded. */
export interface FilterResponse {
  status: number;
  code: ErrorCode;
  headers?: Record<string, string>;
  body?: string;
}

/** undefined = continue with the next filter; a FilterResponse = responded. */
export type FilterResult = FilterResponse | undefined;

/** One filter instance, built once per config snapshot for one route. */
export interface Filter {
  readonly name: string;
  onRequest(ctx: RequestContext): FilterResult | Promise<FilterResult>;
  /** Release timers/connections when its snapshot is retired. */
  close?(): void;
}
