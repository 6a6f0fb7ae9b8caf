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

/** The buffered destinations of this process's loggers, for abandonLogOutput. */
const buffered = new Set<ReturnType<typeof pino.destination>>();

/** Structured JSON logs, one object per line, ISO timestamps. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.stream ?? pino.destination({ fd: options.fd ?? 1, sync: options.sync ?? true });
  if (!options.stream && options.sync === false) buffered.add(destination as ReturnType<typeof pino.destination>);
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'meshanics-server', ...options.fields },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/**
 * Drops the log lines not written yet, for a process whose output has no reader any more (a
 * `serve --workers` worker whose primary died). pino writes what is buffered synchronously at
 * exit, and sonic-boom 4 retries a write that fails with EPIPE for ever (its flushSync only
 * gives up on EAGAIN/EBUSY): the worker would never exit, holding its devices' sockets.
 * pino skips a destroyed destination at exit.
 */
export function abandonLogOutput(): void {
  for (const destination of buffered) destination.destroy();
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
