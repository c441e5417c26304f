import type { Dispatcher } from 'undici';
import type { ClusterRuntime, UpstreamHost } from '../cluster/cluster-manager.js';

/**
 * Fire-and-forget handler for shadow traffic: stateless, so one instance serves every mirrored
 * request, and nothing it sees can delay or fail the primary request.
 */
const discard: Dispatcher.DispatchHandler = {
  onConnect() {},
  onHeaders() { return true; },
  onData() { return true; },
  onComplete() {},
  onError() {},
};

/** Send a copy of a body-less request to the mirror cluster (Envoy appends "-shadow" to the host). */
export function sendMirror(cluster: ClusterRuntime, opts: Dispatcher.DispatchOptions): void {
  const host = cluster.lb.pick(undefined) as UpstreamHost | undefined;
  if (!host) return;
  const headers = (opts.headers as string[]).slice();
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'host') headers[i + 1] = `${headers[i + 1]}-shadow`;
  try {
    host.pool.dispatch({ ...opts, headers, body: null }, discard);
  } catch {
    // A mirror must never affect the primary request.
  }
}
