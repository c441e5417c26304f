import type { Readable, TransformCallback } from 'node:stream';
import { BodyCopy } from './body-copy.js';
import type { Dispatcher } from 'undici';
import type { ClusterRuntime, UpstreamHost } from '../cluster/cluster-manager.js';

/** A route's compiled `mirror` section. */
export interface MirrorPolicy {
  readonly cluster: ClusterRuntime;
  readonly fraction: number;
  /** Bodies up to this size are teed to the mirror; larger ones send the primary request only. */
  readonly maxBodyBytes: number;
}

/**
 * Fire-and-forget handler for shadow traffic: stateless, so one instance serves every mirrored
 * request, and nothing it sees can delay or fail the primary request.
 */
const discard: Dispatcher.DispatchHandler = {
  onConnect() {},
  onHeaders() {
    return true;
  },
  onData() {
    return true;
  },
  onComplete() {},
  onError() {},
};

/** Send a copy of a request to the mirror cluster (Envoy appends "-shadow" to the host). */
export function sendMirror(
  cluster: ClusterRuntime,
  opts: Dispatcher.DispatchOptions,
  body: Buffer | null = null,
): void {
  const host = cluster.lb.pick(undefined) as UpstreamHost | undefined;
  if (!host) return;
  const headers = (opts.headers as string[]).slice();
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'host') headers[i + 1] = `${headers[i + 1]}-shadow`;
  try {
    host.pool.dispatch({ ...opts, headers, body }, discard);
  } catch {
    // A mirror must never affect the primary request.
  }
}

/**
 * The request body on its way to the primary upstream, copied for the mirror as it passes (up to the
 * policy's limit); the mirror is sent with the copy once the body ended. A body that outgrows the
 * limit, or fails, is not mirrored. The primary's `opts.body` is the tee.
 */
export class MirrorTee extends BodyCopy {
  readonly #opts: Dispatcher.DispatchOptions;
  readonly #cluster: ClusterRuntime;

  constructor(body: Readable, opts: Dispatcher.DispatchOptions, policy: MirrorPolicy) {
    super(body, policy.maxBodyBytes);
    this.#opts = opts;
    this.#cluster = policy.cluster;
  }

  override _flush(done: TransformCallback): void {
    super._flush((err) => {
      const copy = this.copy();
      if (copy) sendMirror(this.#cluster, this.#opts, copy);
      done(err);
    });
  }
}
