import type { Readable } from 'node:stream';
import { BodyCopy } from './body-copy.js';

/**
 * Sending a request body again: to a retry, or in the keep-alive race. A body can go again when it
 * is absent or a Buffer, when nothing of the stream was read yet, or when all of it was kept
 * (ReplayableBody, up to `retry.maxBodyBytes`, as Envoy buffers a retried request's body up to its
 * per-request buffer limit).
 */

/**
 * A request body kept for another attempt while it streams to the first. Once the body has ended
 * within the limit, `copy()` hands the whole of it to a retry; a body that outgrew the limit can no
 * longer be retried. Without this, a POST (or a gRPC call, whose body is always read before the
 * answer) could never be retried.
 */
export class ReplayableBody extends BodyCopy {
  /** True while a retry could still be given the whole body (nothing read yet, or all of it kept). */
  get replayable(): boolean {
    return this.readableDidRead === false || (this.ended && this.keeping);
  }
}

type Body = Readable | Buffer | string | null | undefined;

/** Can this body be sent again (now, or once a kept body has ended)? */
export function bodyReplayable(body: Body): boolean {
  if (body == null || typeof body === 'string' || Buffer.isBuffer(body)) return true;
  return body instanceof ReplayableBody ? body.replayable : body.readableDidRead === false;
}

/** The body for another attempt: a kept body that was read is replaced by its copy; anything else goes as it is. */
export function rewoundBody<B extends Body>(body: B): B | Buffer {
  return body instanceof ReplayableBody && body.readableDidRead ? body.copy()! : body;
}

/** A streamed body the upstream never got a byte of (the keep-alive race may resend even a POST then). */
export function bodyUnread(body: Body): boolean {
  return body != null && typeof body !== 'string' && !Buffer.isBuffer(body) && body.readableDidRead === false;
}
