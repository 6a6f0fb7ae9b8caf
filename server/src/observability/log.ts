// observability/ owns what an operator watches: structured JSON logs (this file, pino) and Prometheus metrics
// (metrics.ts, prom-client, served at /metrics on the REST port).
// May import: pino, prom-client, and types only from store/, device-api/ and api/ (metrics reads their counters).
// Every folder may import log.ts.

import pino, { type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level?: LevelWithSilent;
  /** File descriptor to write JSON lines to: 1 for `serve` (tests parse stdout), 2 for one-shot CLI commands. */
  fd?: number;
  /**
   * Synchronous writes (default): one-shot commands and tests read every line right away.
   * `serve` passes false: writes are buffered and flushed asynchronously (and on exit).
   */
  sync?: boolean;
  /** Write to this stream instead of `fd` (the `serve --workers` primary: the stream it passes the workers' lines on). */
  stream?: NodeJS.WritableStream;
  /** Fields on every line besides `service` (under `serve --workers`: `worker`, or `primary`). */
  fields?: Record<string, string | number | boolean>;
}

/** Structured JSON logs, one object per line, ISO timestamps. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'meshanics-server', ...options.fields },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.stream ?? pino.destination({ fd: options.fd ?? 1, sync: options.sync ?? true }),
  );
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
