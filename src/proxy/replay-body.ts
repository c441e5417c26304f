import { BodyCopy } from './body-copy.js';

/**
 * A request body kept for another attempt while it streams to the first, as Envoy buffers a retried
 * request's body (up to `retry.bufferBytes`). Once the body has ended within the limit, `copy()`
 * hands the whole of it to a retry; a body that outgrew the limit can no longer be retried. Without
 * this, a gRPC call (a POST whose body is always read before the answer) could never be retried.
 */
export class ReplayableBody extends BodyCopy {
  /** True while a retry could still be given the whole body (nothing read yet, or all of it kept). */
  get replayable(): boolean {
    return this.readableDidRead === false || (this.ended && this.keeping);
  }
}
