import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';

/**
 * A request body kept for another attempt while it streams to the first, as Envoy buffers a retried
 * request's body: chunks pass through at once (the upstream's backpressure sets the pace) and are
 * copied up to `limit` bytes. Once the body has ended within the limit, {@link replay} hands the
 * whole of it to a retry; a body that outgrew the limit can no longer be retried. Without this, a
 * gRPC call (a POST whose body is always read before the answer) could never be retried.
 */
export class ReplayableBody extends Transform {
  readonly #limit: number;
  #copies: Buffer[] | undefined = [];
  #size = 0;
  #ended = false;

  constructor(body: Readable, limit: number) {
    super();
    this.#limit = limit;
    // An error on either side destroys both, as it would the body undici reads directly.
    pipeline(body, this, ignore);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.#copies) {
      this.#size += chunk.length;
      if (this.#size > this.#limit) this.#copies = undefined;
      else this.#copies.push(chunk);
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.#ended = true;
    done();
  }

  /** True while a retry could still be given the whole body (nothing read yet, or all of it kept). */
  get replayable(): boolean {
    return this.readableDidRead === false || (this.#ended && this.#copies !== undefined);
  }

  /** The whole body for another attempt; undefined when it outgrew the limit or has not ended. */
  replay(): Buffer | undefined {
    return this.#ended && this.#copies ? Buffer.concat(this.#copies) : undefined;
  }
}

function ignore(): void {}
