import { describe, it, expect } from 'vitest';
import { Readable } from 'node:stream';
import { ReplayableBody, bodyReplayable, bodyUnread, rewoundBody } from '../../../src/proxy/body-replay.js';

/** Read a stream to its end (as undici does when it sends a body). */
async function drain(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('sending a request body again (retries, the keep-alive race)', () => {
  it('no body, a Buffer or a string can always go again; an unread stream too, a read one not', async () => {
    expect(bodyReplayable(null)).toBe(true);
    expect(bodyReplayable(Buffer.from('x'))).toBe(true);
    const s = Readable.from([Buffer.from('abc')]);
    expect(bodyReplayable(s)).toBe(true);
    expect(bodyUnread(s)).toBe(true);
    await drain(s);
    expect(bodyReplayable(s)).toBe(false);
    expect(bodyUnread(s)).toBe(false);
    expect(bodyUnread(Buffer.from('x'))).toBe(false);
    expect(bodyUnread(null)).toBe(false);
  });

  it('a kept body within the limit is replayed whole after it was sent: a retry gets its copy', async () => {
    const kept = new ReplayableBody(Readable.from([Buffer.from('hello '), Buffer.from('world')]), 64);
    expect(kept.replayable).toBe(true);
    expect(rewoundBody(kept)).toBe(kept); // nothing read yet: the stream itself goes
    expect((await drain(kept)).toString()).toBe('hello world');
    expect(kept.replayable).toBe(true);
    expect(bodyReplayable(kept)).toBe(true);
    const again = rewoundBody(kept);
    expect(Buffer.isBuffer(again) && again.toString()).toBe('hello world');
  });

  it('a body that outgrew the limit is sent once and cannot be replayed', async () => {
    const big = new ReplayableBody(Readable.from([Buffer.alloc(40), Buffer.alloc(40)]), 64);
    expect((await drain(big)).length).toBe(80);
    expect(big.replayable).toBe(false);
    expect(bodyReplayable(big)).toBe(false);
  });
});
