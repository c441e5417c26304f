import { Transform, type Readable, type TransformCallback } from 'node:stream';

/** The error a request body over its limit fails with; the forwarder answers it with 413. */
export class BodyTooLargeError extends Error {
  readonly code = 'ERR_MERIDIAN_BODY_TOO_LARGE';
  constructor(limit: number) {
    super(`request body over ${limit} bytes`);
  }
}

/**
 * A request body without Content-Length (chunked HTTP/1.1, most HTTP/2 and gRPC requests) counted as
 * it streams: past `limit` bytes it fails with {@link BodyTooLargeError}, which stops the upstream
 * request (undici aborts on a body error) and answers 413 while the response has not started. A
 * body announcing its length is refused before anything is read (handle-request), so only bodies
 * whose size is unknown pay for the count.
 */
export class LimitedBody extends Transform {
  #left: number;
  readonly #limit: number;

  constructor(body: Readable, limit: number) {
    super();
    this.#left = limit;
    this.#limit = limit;
    // The client's errors end the count too; but going over the limit must not destroy the client's
    // request (pipeline() would, and with it the socket the 413 has to be written on): pipe() only
    // unpipes on this stream's error, leaving the rest of the body unread.
    body.on('error', (err) => this.destroy(err));
    body.pipe(this);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#left -= chunk.length;
    if (this.#left < 0) return done(new BodyTooLargeError(this.#limit));
    done(null, chunk);
  }
}
