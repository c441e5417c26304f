import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../common/errors.js';
import type { PeerIdentity, RequestContext } from '../filters/filter.js';
import type { ProxyEnv } from './forwarder.js';
import type { RequestScan } from './request-scan.js';
import type { CompiledRoute, Snapshot } from './snapshot.js';
import type { DownstreamRequest, DownstreamResponse } from '../listener/downstream.js';

/*
 * The types a request carries along the request path (guard -> route -> filters -> action ->
 * upstream). A leaf: it imports types only, none of the stages, so every stage can read them without
 * the stages importing each other.
 */

/** What a listener contributes to each request. */
export interface ListenerContext {
  readonly name: string;
  readonly proto: 'http' | 'https';
  /** Send the verified client certificate upstream as x-forwarded-client-cert. */
  readonly forwardClientCert: boolean;
  /** Verified client certificate identity of the connection, if any. */
  peerOf(req: DownstreamRequest): PeerIdentity | undefined;
}

/** Per-worker request-path state that outlives snapshots. */
export interface RequestEnv extends ProxyEnv {
  shedding: boolean;
  normalize(path: string): string | null;
  xfcc(peer: PeerIdentity): string;
}

/**
 * Where a request goes: made once per request by routeRequest (route.ts). Refused, it carries the
 * error; routed, it is the request's {@link RoutedRequest} (see routedOf), so routing allocates one
 * object and nothing is shared between requests.
 */
export interface Target extends RequestScan {
  readonly snap: Snapshot;
  readonly listener: ListenerContext;
  readonly env: RequestEnv;
  readonly req: DownstreamRequest;
  route: CompiledRoute | undefined;
  /** Set instead of `route` when the request is refused before routing or matches no route. */
  error: ErrorCode | undefined;
  /** The refusal leaves the connection's framing in doubt: close it after answering. */
  close: boolean;
  /** Normalized path, without the query. */
  path: string;
  /** Raw query including its '?', or ''. */
  query: string;
}

/**
 * A routed request on its way to its action (direct, redirect, forward, upgrade): what every stage
 * after routing reads, in one object instead of a list of positional arguments. Built once per routed
 * request; an {@link Exchange} is one too.
 */
export interface RoutedRequest {
  readonly snap: Snapshot;
  readonly route: CompiledRoute;
  readonly listener: ListenerContext;
  readonly env: RequestEnv;
  readonly req: DownstreamRequest;
  /** Normalized path, without the query. */
  readonly path: string;
  /** Raw query including its '?', or ''. */
  readonly query: string;
  readonly authority: string;
  readonly hasBody: boolean;
}

/**
 * A routed request in the filter stage. It is the filters' RequestContext and also carries what the
 * request path needs after them, so a filtered request costs one object whether its filters answer
 * synchronously or not (no per-request closures).
 */
export interface Exchange extends RequestContext, RoutedRequest {
  /** A plain request's response; upgrades have none until one is needed for a refusal. */
  readonly res: DownstreamResponse | undefined;
  /** Upgrades only: the client's socket (holding any bytes read past the request head). */
  readonly socket: Duplex | undefined;
}
