import { destination, pino, type Logger } from 'pino';

/**
 * Where every line goes: stdout, written asynchronously. Under load the lines logged while a write is
 * in flight leave together in the next one (one syscall for a burst of access lines, not one each);
 * when idle a line leaves at once. Whatever is still buffered when the process exits is written then.
 */
const stdout = destination({ dest: 1, sync: false });
process.on('exit', () => {
  try {
    flushLines();
    stdout.flushSync();
  } catch {
    // stdout already gone: nothing to save.
  }
});

/** The process logger: JSON lines on stdout (pino), level from MERIDIAN_LOG_LEVEL. */
export const logger: Logger = pino(
  {
    level: process.env.MERIDIAN_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  },
  stdout,
);

/** Preformatted lines written since the last turn of the event loop (see writeLine). */
let pending: string[] = [];
let flushScheduled = false;

/**
 * Write a preformatted line (ending in a newline) through the logger's stdout buffer: the access log's
 * lines. The lines of one turn of the event loop go out as one write (under load, tens of requests
 * finish per turn), after anything the logger wrote in that turn.
 */
export function writeLine(line: string): void {
  pending.push(line);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(flushLines);
}

function flushLines(): void {
  flushScheduled = false;
  if (pending.length === 0) return;
  const lines = pending.join('');
  pending = [];
  stdout.write(lines);
}
