import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
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
  onHeaders() { return true; },
  onData() { return true; },
  onComplete() {},
  onError() {},
};

/** Send a copy of a request to the mirror cluster (Envoy appends "-shadow" to the host). */
export function sendMirror(cluster: ClusterRuntime, opts: Dispatcher.DispatchOptions, body: Buffer | null = null): void {
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
 * The request body on its way to the primary upstream, copied for the mirror as it passes: chunks
 * go through at once (the primary's backpressure is the only one), copies are kept up to the
 * policy's limit, and the mirror is sent with them once the body ended. A body that outgrows the
 * limit, or fails, is not mirrored. The primary's `opts.body` is the tee.
 */
export class MirrorTee extends Transform {
  readonly #opts: Dispatcher.DispatchOptions;
  readonly #policy: MirrorPolicy;
  #copies: Buffer[] | undefined = [];
  #size = 0;

  constructor(body: Readable, opts: Dispatcher.DispatchOptions, policy: MirrorPolicy) {
    super();
    this.#opts = opts;
    this.#policy = policy;
    // An error on either side destroys both, as it would the body undici reads directly.
    pipeline(body, this, ignore);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.#copies) {
      this.#size += chunk.length;
      if (this.#size > this.#policy.maxBodyBytes) this.#copies = undefined;
      else this.#copies.push(chunk);
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.#copies) sendMirror(this.#policy.cluster, this.#opts, Buffer.concat(this.#copies));
    this.#copies = undefined;
    done();
  }
}

function ignore(): void {}
