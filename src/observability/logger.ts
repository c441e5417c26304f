import { pino, type Logger } from 'pino';
import { Counter } from 'prom-client';
import { LineSink } from './line-sink.js';
import { registry } from './metrics.js';

/**
 * Where every line goes: stdout, written asynchronously (see LineSink). Under load the lines of one
 * turn of the event loop leave together in one write; whatever still waits when the process exits is
 * written then.
 */
const stdout = new LineSink(1);
process.on('exit', () => stdout.flushSync());

new Counter({
  name: 'meridian_log_lines_dropped_total',
  help: 'Log and access lines dropped because stdout did not keep up (more than 16 MiB waiting).',
  registers: [registry],
  collect() {
    this.reset();
    if (stdout.dropped > 0) this.inc(stdout.dropped);
  },
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

/**
 * Write a preformatted line (ending in a newline) to the logger's stdout: the access log's lines. They
 * keep their order with the logger's own, and leave with them after the current turn of the event loop.
 */
export function writeLine(line: string): void {
  stdout.write(line);
}
