import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';

/**
 * A request body on its way upstream, copied as it passes: chunks go through at once (the upstream's
 * backpressure is the only one) and are kept up to `limit` bytes; a body that outgrows the limit
 * keeps no copy. What the copy is for is the subclass's: a mirror (MirrorTee) or a retry
 * (ReplayableBody).
 */
export class BodyCopy extends Transform {
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

  /** The whole body once it has ended within the limit; undefined before, or when it outgrew it. */
  copy(): Buffer | undefined {
    return this.#ended && this.#copies ? Buffer.concat(this.#copies) : undefined;
  }

  /** The body has not outgrown the limit (a whole copy exists, or may still come). */
  protected get keeping(): boolean {
    return this.#copies !== undefined;
  }

  protected get ended(): boolean {
    return this.#ended;
  }
}

function ignore(): void {}
