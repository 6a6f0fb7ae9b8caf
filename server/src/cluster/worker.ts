// A worker's side of `serve --workers N`: it runs the whole server (server.ts), like a replica
// of its own on the shared data dir and database, and differs in three things only: it tells
// the primary when it listens, it answers /metrics with what the primary gathers from every
// worker, and it stops on the primary's request as on a signal.
//
// Nothing here runs at import: `serve` without workers imports this module too, and a
// 'message' listener would keep an IPC channel to whatever forked it open for ever.
import cluster from 'node:cluster';
import type { Registry } from 'prom-client';
import { abandonLogOutput, type Logger } from '../observability/log.js';
import type { ServerMetrics } from '../observability/metrics.js';
import { isPrimaryMessage, WORKER_SLOT_ENV, type PrimaryMessage, type WorkerAddresses, type WorkerMessage } from './messages.js';

/** A scrape the primary has not answered by then fails (it waits 5 s for each worker's figures). */
const SCRAPE_TIMEOUT_MS = 10_000;

/** This process's worker slot (1..N), or undefined when it is not a `serve --workers` worker. */
export function workerSlot(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const slot = Number(process.env[WORKER_SLOT_ENV]);
  return Number.isInteger(slot) && slot > 0 ? slot : undefined;
}

function send(message: WorkerMessage): void {
  // A primary gone mid-send is not this worker's error: it ends with the channel (cluster's own rule).
  if (process.connected) process.send?.(message, undefined, undefined, () => undefined);
}

let ownRegistry: Registry | undefined;
let scrapes = 0;
const waiting = new Map<number, { resolve(text: { contentType: string; body: string }): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
/** What ends this worker: the first signal or shutdown request, kept from the moment it joined (even during the start). */
let stopRequested: { reason: string; ownSignal: boolean } | undefined;
const stopListeners: Array<() => void> = [];

let signals = 0;
/** Set once the worker disconnects on its own (leaveCluster): from then on the channel's end is ours, not the primary's death. */
let leaving = false;

function requestStop(reason: string, ownSignal: boolean): void {
  // A second signal means "now", as for a single process (cli/args.ts). The primary's request
  // is not a signal: systemd's stop reaches the primary, which asks, and every worker of the
  // unit's group, which is signalled, and that is one stop, not two.
  if (ownSignal && ++signals > 1) process.exit(1);
  if (stopRequested) return;
  stopRequested = { reason, ownSignal };
  if (ownSignal) send({ type: 'meshanics:stopping' });
  for (const listener of stopListeners.splice(0)) listener();
}

function onPrimaryMessage(message: PrimaryMessage): void {
  switch (message.type) {
    case 'meshanics:shutdown':
      return requestStop('asked by the primary', false);
    case 'meshanics:collect': {
      const { id } = message;
      (ownRegistry ? ownRegistry.getMetricsAsJSON() : Promise.resolve([])).then(
        (metrics) => send({ type: 'meshanics:collected', id, metrics }),
        (err: unknown) => send({ type: 'meshanics:collected', id, metrics: [], error: String((err as Error)?.message ?? err) }),
      );
      return;
    }
    case 'meshanics:scraped':
    case 'meshanics:scrape-failed': {
      const pending = waiting.get(message.id);
      if (!pending) return;
      waiting.delete(message.id);
      clearTimeout(pending.timer);
      if (message.type === 'meshanics:scraped') pending.resolve({ contentType: message.contentType, body: message.body });
      else pending.reject(new Error(`the primary could not gather the workers' metrics: ${message.error}`));
    }
  }
}

/**
 * Called first thing in a worker, before anything is awaited: from here on SIGTERM, SIGINT
 * and the primary's request are remembered (a stop asked for while starting drains right
 * after the start), and SIGHUP, whose default would end the process, goes to `onHangup`.
 */
export function joinCluster(onHangup: () => void): void {
  // Registered before the logger is made, so it runs before pino's own exit flush: when the
  // channel is gone without this worker leaving, the primary died (node:cluster then exits the
  // worker), and the output it read for us has no reader: writing it would never end.
  process.on('exit', () => {
    if (!leaving && !process.connected) abandonLogOutput();
  });
  process.on('SIGTERM', () => requestStop('SIGTERM', true));
  process.on('SIGINT', () => requestStop('SIGINT', true));
  process.on('SIGHUP', onHangup);
  process.on('message', (message: unknown) => {
    if (isPrimaryMessage(message)) onPrimaryMessage(message);
  });
}

/** What startServer needs to label this worker's series and to answer scrapes for all workers. */
export function workerMetrics(slot: number): { slot: number; attachMetrics(metrics: ServerMetrics): void } {
  return {
    slot,
    attachMetrics(metrics) {
      ownRegistry = metrics.registry;
      metrics.answerScrapesWith(askPrimaryForMetrics);
    },
  };
}

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

/** Resolves at the first of SIGTERM, SIGINT or the primary's request since joinCluster. */
export function waitForWorkerShutdown(logger: Logger): Promise<string> {
  return new Promise((resolve) => {
    const done = (): void => {
      logger.info({ reason: stopRequested!.reason }, 'shutting down');
      resolve(stopRequested!.reason);
    };
    if (stopRequested) done();
    else stopListeners.push(done);
  });
}

/**
 * Leaves the cluster once the server has closed: the IPC channel would otherwise keep the
 * process alive. The timer is a backstop for a handle something forgot to close.
 */
export function leaveCluster(): void {
  leaving = true;
  for (const pending of waiting.values()) clearTimeout(pending.timer);
  if (cluster.worker?.isConnected()) cluster.worker.disconnect();
  setTimeout(() => process.exit(process.exitCode ?? 0), 5000).unref();
}
