import { pino, type Logger } from 'pino';

/** The process logger: JSON lines on stdout (pino), level from MERIDIAN_LOG_LEVEL. */
export const logger: Logger = pino({
  level: process.env.MERIDIAN_LOG_LEVEL ?? 'info',
  base: { pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
});
