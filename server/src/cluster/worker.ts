// A worker's side of `serve --workers N`: it runs the whole server (server.ts), like a replica
// of its own on the shared data dir and database, and differs in three things only: it tells
// the primary when it listens, it answers /metrics with the sum the primary gathers from every
// worker, and it stops on the primary's request as on a signal.
import cluster from 'node:cluster';
import type { Registry } from 'prom-client';
import type { Logger } from '../observability/log.js';
import type { ServerMetrics } from '../observability/metrics.js';
import { isPrimaryMessage, WORKER_SLOT_ENV, type WorkerAddresses, type WorkerMessage } from './messages.js';

/** A scrape the primary has not answered by then fails (prom-client's own wait for the workers is 5 s). */
const SCRAPE_TIMEOUT_MS = 10_000;

/** This process's worker slot (1..N), or undefined when it is not a `serve --workers` worker. */
export function workerSlot(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const slot = Number(process.env[WORKER_SLOT_ENV]);
  return Number.isInteger(slot) && slot > 0 ? slot : undefined;
}

function send(message: WorkerMessage): void {
  if (process.connected) process.send?.(message);
}

/** What startServer needs to count this worker apart and to answer scrapes for all of them. */
export function workerMetrics(slot: number): { slot: number; attachMetrics(metrics: ServerMetrics): void } {
  return {
    slot,
    attachMetrics(metrics) {
      ownRegistry = metrics.registry;
      metrics.answerScrapesWith(askPrimaryForMetrics);
    },
  };
}

let ownRegistry: Registry | undefined;
let scrapes = 0;
const waiting = new Map<number, { resolve(text: { contentType: string; body: string }): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
process.on('message', (message: unknown) => {
  if (!isPrimaryMessage(message) || message.type === 'meshanics:shutdown') return;
  if (message.type === 'meshanics:collect') {
    const { id } = message;
    (ownRegistry ? ownRegistry.getMetricsAsJSON() : Promise.resolve([])).then(
      (metrics) => send({ type: 'meshanics:collected', id, metrics }),
      (err: unknown) => send({ type: 'meshanics:collected', id, metrics: [], error: String((err as Error)?.message ?? err) }),
    );
    return;
  }
  const pending = waiting.get(message.id);
  if (!pending) return;
  waiting.delete(message.id);
  clearTimeout(pending.timer);
  if (message.type === 'meshanics:scraped') pending.resolve({ contentType: message.contentType, body: message.body });
  else pending.reject(new Error(`the primary could not gather the workers' metrics: ${message.error}`));
});

function askPrimaryForMetrics(): Promise<{ contentType: string; body: string }> {
  const id = ++scrapes;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiting.delete(id);
      reject(new Error(`the primary did not answer a metrics scrape within ${SCRAPE_TIMEOUT_MS} ms`));
    }, SCRAPE_TIMEOUT_MS);
    waiting.set(id, { resolve, reject, timer });
    send({ type: 'meshanics:scrape', id });
  });
}

export function announceListening(addresses: WorkerAddresses): void {
  send({ type: 'meshanics:listening', addresses });
}

/**
 * Resolves at the first of SIGTERM, SIGINT or the primary's request. A terminal's Ctrl-C and
 * systemd's stop signal reach every process of the group, the primary's request comes as well:
 * only a second signal means "now" (exit 1), as for a single process (cli/args.ts).
 */
export function waitForWorkerShutdown(logger: Logger): Promise<string> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (reason: string, ownSignal: boolean): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ reason }, 'shutting down');
      if (ownSignal) send({ type: 'meshanics:stopping' });
      process.once('SIGINT', () => process.exit(1));
      process.once('SIGTERM', () => process.exit(1));
      resolve(reason);
    };
    process.once('SIGTERM', () => stop('SIGTERM', true));
    process.once('SIGINT', () => stop('SIGINT', true));
    process.on('message', (message: unknown) => {
      if (isPrimaryMessage(message) && message.type === 'meshanics:shutdown') stop('asked by the primary', false);
    });
  });
}

/**
 * Leaves the cluster once the server has closed: the IPC channel would otherwise keep the
 * process alive. The timer is a backstop for a handle something forgot to close.
 */
export function leaveCluster(): void {
  for (const pending of waiting.values()) clearTimeout(pending.timer);
  if (cluster.worker?.isConnected()) cluster.worker.disconnect();
  setTimeout(() => process.exit(process.exitCode ?? 0), 5000).unref();
}
