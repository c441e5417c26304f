import { write as fsWrite, writeSync } from 'node:fs';

/** Bytes waiting for a slow stdout beyond which new lines are dropped (and counted) instead of kept. */
const MAX_PENDING_BYTES = 16 * 1024 * 1024;
const CHUNK_BYTES = 64 * 1024;
/** Wait before writing again to a non-blocking descriptor that answered EAGAIN (sonic-boom's 100 ms). */
const BUSY_RETRY_MS = 100;

/**
 * Lines (the logger's and the access log's) written asynchronously to one file descriptor, encoded
 * into Buffers as they come. The lines of one turn of the event loop leave in one write after it;
 * under load tens of access lines go out per syscall.
 *
 * Why not pino's sonic-boom: it keeps lines as strings, joins them, and after every write encodes
 * what it wrote a second time to learn its byte length; at one access line per request that was a
 * fifth of the access log's cost. Here each line is encoded once, straight into the chunk it is
 * written from.
 *
 * A chunk is written from `start` to `end` while later lines are appended after `end`; a full chunk
 * waits in `full` and a new one is taken. When the descriptor does not keep up, at most
 * MAX_PENDING_BYTES wait; later lines are dropped and counted (`dropped`), not buffered without bound.
 */
export class LineSink {
  readonly #fd: number;
  readonly #maxPending: number;
  #chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  /** First byte of the current chunk not yet handed to a write. */
  #start = 0;
  /** End of the bytes written into the current chunk. */
  #end = 0;
  /** Chunks filled up while a write was in flight, oldest first. */
  #full: Buffer[] = [];
  #pending = 0;
  /** The bytes of the write in flight (undefined: none). */
  #inFlight: Buffer | undefined;
  #scheduled = false;
  #broken = false;
  dropped = 0;

  constructor(fd: number, maxPendingBytes = MAX_PENDING_BYTES) {
    this.#fd = fd;
    this.#maxPending = maxPendingBytes;
  }

  /** Queue a line (its newline included); it is written after the current turn of the event loop. */
  write(line: string): boolean {
    if (this.#broken) return true;
    // Up to 3 bytes per UTF-16 unit: reserve the worst case, so write never truncates.
    const worst = line.length * 3;
    if (this.#pending + worst > this.#maxPending) {
      this.dropped++;
      return true;
    }
    if (this.#end + worst > this.#chunk.length) this.#nextChunk(worst);
    const n = this.#chunk.write(line, this.#end);
    this.#end += n;
    this.#pending += n;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flush);
    }
    return true;
  }

  /** Write everything queued now, synchronously (at exit). Bytes of a write in flight are not written again. */
  flushSync(): void {
    if (this.#broken) return;
    for (const buf of this.#takeQueued()) {
      let off = 0;
      let busy = 0;
      while (off < buf.length) {
        try {
          off += writeSync(this.#fd, buf, off);
        } catch (err) {
          // A non-blocking pipe that is full: try again a bounded number of times, then give up.
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN' && ++busy < 1000) continue;
          this.#broken = true;
          return;
        }
      }
    }
  }

  #nextChunk(atLeast: number): void {
    if (this.#end > this.#start) this.#full.push(this.#chunk.subarray(this.#start, this.#end));
    this.#chunk = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, atLeast));
    this.#start = this.#end = 0;
  }

  /** Everything queued and not in flight, oldest first; the current chunk goes on after what it hands out. */
  #takeQueued(): Buffer[] {
    const out = this.#full;
    this.#full = [];
    if (this.#end > this.#start) {
      out.push(this.#chunk.subarray(this.#start, this.#end));
      this.#start = this.#end;
    }
    return out;
  }

  readonly #flush = (): void => {
    this.#scheduled = false;
    if (this.#inFlight !== undefined || this.#broken) return;
    const queued = this.#takeQueued();
    if (queued.length === 0) return;
    this.#send(queued.length === 1 ? queued[0] : Buffer.concat(queued));
  };

  #send(buf: Buffer): void {
    this.#inFlight = buf;
    fsWrite(this.#fd, buf, 0, buf.length, null, this.#written);
  }

  readonly #written = (err: NodeJS.ErrnoException | null, n: number): void => {
    const buf = this.#inFlight!;
    if (err) {
      if (err.code === 'EAGAIN') {
        setTimeout(() => this.#send(buf), BUSY_RETRY_MS);
        return;
      }
      // stdout is gone (EPIPE, EBADF): nothing more can be written; drop what waits.
      this.#broken = true;
      this.#inFlight = undefined;
      this.#full = [];
      this.#start = this.#end;
      this.#pending = 0;
      return;
    }
    this.#pending -= n;
    if (n < buf.length) return this.#send(buf.subarray(n));
    this.#inFlight = undefined;
    // Lines queued while this write was in flight: the next write, now.
    this.#flush();
  };
}
