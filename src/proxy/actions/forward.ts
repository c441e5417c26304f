import type { Dispatcher } from 'undici';
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Readable } from 'node:stream';
import { buildUpstreamHeaders, contentLengthIn } from '../headers.js';
import { ProxyRequest } from '../forwarder.js';
import { pickCluster } from '../route-runtime.js';
import { MirrorTee, sendMirror, type MirrorPolicy } from '../mirror.js';
import { ReplayableBody } from '../body-replay.js';
import { LimitedBody } from '../body-limit.js';
import { clientIp, clientRequestId } from '../request-facts.js';
import { addIdentityHeaders, forwardFacts, upstreamPath, upstreamQuery } from '../upstream-request.js';
import type { DownstreamRequest, DownstreamResponse } from '../../listener/downstream.js';
import type { Exchange, RoutedRequest } from '../exchange.js';

/**
 * Send a routed request to its cluster (an upgrade too, with its `Upgrade` protocol): upstream
 * headers (hop-by-hop and client identity headers stripped, the gateway's identity headers set),
 * the normalized and rewritten path, then a ProxyRequest that runs the attempts.
 */
export function forward(
  r: RoutedRequest,
  res: DownstreamResponse,
  x: Exchange | undefined,
  upgrade: string | undefined,
): void {
  const { snap, route, env, req, hasBody } = r;
  const cluster = pickCluster(route, env.rng.random());
  if (!cluster)
    return ProxyRequest.answer(req, res, env, {
      route,
      requestId: x?.requestId ?? clientRequestId(req),
      code: 'no_healthy_upstream',
    });
  const facts = forwardFacts(r);
  const headers: string[] = [];
  const bad = buildUpstreamHeaders(req.rawHeaders, facts, route.requestOps, headers);
  if (bad)
    return ProxyRequest.answer(req, res, env, {
      route,
      requestId: x?.requestId ?? clientRequestId(req),
      code: bad,
      close: true,
    });
  // The client address after trusted-proxy handling: x-real-ip, and source-IP hashing (like rate limits
  // and RBAC). At the edge it is the peer address the facts already hold.
  const ip = x ? x.clientIp : facts.trustForwarded ? clientIp(req, true) : facts.clientIp;
  addIdentityHeaders(headers, facts, r, x, ip);
  const opts: Dispatcher.DispatchOptions = {
    path: upstreamPath(route, r.path, upstreamQuery(x, r.query)),
    method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
    headers,
    body: hasBody ? req : null,
    headersTimeout: route.retry?.perTryTimeoutMs || route.timeoutMs,
    bodyTimeout: route.idleTimeoutMs,
    upgrade,
  };
  // Read from the upstream list: IncomingMessage builds its `headers` object only when asked.
  const length = hasBody ? contentLengthIn(headers) : -1;
  // Innermost, so the mirror's and a retry's copies are of the counted body.
  if (hasBody && route.maxBodyBytes > 0 && length < 0) opts.body = new LimitedBody(req, route.maxBodyBytes);
  if (route.mirror && upgrade === undefined && env.rng.random() < route.mirror.fraction)
    mirror(route.mirror, opts, hasBody, length);
  if (hasBody && route.retry && route.retry.bufferBytes > 0 && length <= route.retry.bufferBytes) {
    opts.body = new ReplayableBody(opts.body as Readable, route.retry.bufferBytes);
  }
  if (isGone(req, res)) return;
  const hashKey = cluster.hashKeyOf ? cluster.hashKeyOf(req.headers, ip) : undefined;
  const p = new ProxyRequest(req, res, route, cluster, env, opts);
  p.hashKey = hashKey;
  p.requestId = facts.requestId!;
  if (snap.tracing !== undefined) p.trace = snap.tracing.begin(p, headers, facts.traceparent);
  if (x?.responseHeaders.length) p.extraResponseHeaders = x.responseHeaders;
  p.start();
  if (hasBody && upgrade === undefined && snap.bodyProgress) p.watchBody(snap.bodyProgress);
}

/** Send a body-less request's copy now; tee a body within the mirror's limit and send the copy when it ends. */
function mirror(policy: MirrorPolicy, opts: Dispatcher.DispatchOptions, hasBody: boolean, length: number): void {
  if (!hasBody) return sendMirror(policy.cluster, opts);
  if (length > policy.maxBodyBytes) return;
  opts.body = new MirrorTee(opts.body as Readable, opts, policy);
}

/** True when the client already reset the stream or closed the connection (no 'close' will come). */
function isGone(req: DownstreamRequest, res: DownstreamResponse): boolean {
  if (req.httpVersionMajor === 2) return (res as Http2ServerResponse).stream.destroyed;
  return (res as ServerResponse).destroyed || req.socket.destroyed;
}
