import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LineSink } from '../../../src/observability/line-sink.js';

/** Wait until the file holds `bytes` bytes (the sink writes on the thread pool), bounded. */
async function fileReaches(path: string, bytes: number): Promise<string> {
  for (let i = 0; i < 500; i++) {
    const text = readFileSync(path, 'utf8');
    if (Buffer.byteLength(text) >= bytes) return text;
    await new Promise((r) => setTimeout(r, 10));
  }
  return readFileSync(path, 'utf8');
}

describe('LineSink', () => {
  let dir: string;
  let path: string;
  let fd: number;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'line-sink-'));
    path = join(dir, 'out');
    fd = openSync(path, 'w');
  });
  afterEach(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes lines in order across turns, chunks and a line larger than a chunk, multibyte included', async () => {
    const sink = new LineSink(fd);
    const lines: string[] = [];
    for (let turn = 0; turn < 20; turn++) {
      for (let i = 0; i < 500; i++) {
        const line = `{"turn":${turn},"i":${i},"s":"héllo ✓ ${'x'.repeat(i % 50)}"}\n`;
        lines.push(line);
        sink.write(line);
      }
      if (turn === 10) {
        const big = `${'y'.repeat(200 * 1024)}\n`;
        lines.push(big);
        sink.write(big);
      }
      await nextTurn();
    }
    const expected = lines.join('');
    expect(await fileReaches(path, Buffer.byteLength(expected))).toBe(expected);
    expect(sink.dropped).toBe(0);
  });

  it('writes what waits synchronously on flushSync (at exit)', () => {
    const sink = new LineSink(fd);
    sink.write('one\n');
    sink.write('two ✓\n');
    sink.flushSync();
    expect(readFileSync(path, 'utf8')).toBe('one\ntwo ✓\n');
  });

  it('drops and counts lines beyond its bound instead of buffering without end', async () => {
    const sink = new LineSink(fd, 1000);
    const line = `${'z'.repeat(99)}\n`;
    for (let i = 0; i < 20; i++) sink.write(line);
    // Each line reserves 3 bytes per character until written: 8 fit in 1000 bytes, 12 are dropped.
    expect(sink.dropped).toBe(12);
    expect(await fileReaches(path, 800)).toBe(line.repeat(8));
    // Once written, the room is back.
    sink.write(line);
    expect(sink.dropped).toBe(12);
    expect(await fileReaches(path, 900)).toBe(line.repeat(9));
  });

  it('waits and writes again when a non-blocking pipe is full (EAGAIN), losing nothing', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    try {
      const sink = new LineSink(writer);
      const lines = Array.from({ length: 3000 }, (_, i) => `{"i":${i},"pad":"${'p'.repeat(80)}"}\n`);
      for (const l of lines) sink.write(l); // ~270 KiB: several times what the pipe holds
      const expected = Buffer.from(lines.join(''));
      // Let the writes hit the full pipe before anything is read.
      await new Promise((r) => setTimeout(r, 150));
      const got: Buffer[] = [];
      let total = 0;
      const chunk = Buffer.alloc(65536);
      for (let i = 0; i < 500 && total < expected.length; i++) {
        try {
          const n = readSync(reader, chunk, 0, chunk.length, null);
          got.push(Buffer.from(chunk.subarray(0, n)));
          total += n;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      expect(Buffer.concat(got).equals(expected)).toBe(true);
      expect(sink.dropped).toBe(0);
    } finally {
      closeSync(writer);
      closeSync(reader);
    }
  });
});
