// cluster/ owns `serve --workers N`: one primary process supervising N workers that share the
// listening ports (node:cluster). Each worker is the whole server, as a replica of its own on
// the shared data dir and database would be (docs/operations.md, "Several workers on one machine"): one event loop
// holds a core and, here, at most `nofile` connections, so a machine with more cores or a
// fleet beyond one process's descriptors takes more workers instead of more machines.
// May import: node:cluster, prom-client, observability/log.ts, errors.ts; never server.ts
// (the primary serves nothing itself).
//
// The primary opens the data dir once before forking (migrations, CA, TUF repository), so N
// workers never race to create them; it passes every line the workers log through as whole
// lines; it kills a worker that does not listen in time (a start that hangs would otherwise
// hold the server's start, or leave a slot empty unnoticed); it replaces a worker that crashes
// (backoff, and gives up on one that keeps crashing);
// it answers every worker's /metrics request with every worker's series (each labelled with
// its worker; the gauges read from the database once); and on SIGTERM or SIGINT it asks each
// worker to drain and waits for them.
import cluster, { type Worker } from 'node:cluster';
import type { Readable } from 'node:stream';
import client from 'prom-client';
import { MeshError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { isWorkerMessage, WORKER_SLOT_ENV, type PrimaryMessage, type WorkerAddresses, type WorkerMessage, type WorkerMetrics } from './messages.js';

/** A worker's figures not back by then are left out of the scrape (meshanics_worker_up says which). */
const COLLECT_TIMEOUT_MS = 5000;
/** A line longer than this without a newline is passed on as it is (a worker writing something that is not a log line). */
const MAX_LINE_CHARS = 1024 * 1024;
/** The wait before a crashed worker's slot is filled again, doubled at each crash in a row (0.5, 1, 2, 4 s). */
const RESPAWN_MIN_MS = 500;
/** A worker that listened this long before it crashed starts its slot's backoff over. */
const STABLE_MS = 60_000;
/** Crashes of one slot in a row (each within STABLE_MS of listening, or before it) at which the primary gives up. */
const MAX_CRASHES_IN_A_ROW = 5;

export interface PrimaryOptions {
  workers: number;
  logger: Logger;
  /** Opens the data dir once and closes it (migrations, CA, TUF), before any worker starts. */
  prepare(): Promise<void>;
  /** How long a worker may drain after the shutdown request before it is killed. */
  stopTimeoutMs: number;
  /** How long a worker may take from its fork to listening before it is killed (a database that never answers, a stopped process). */
  startTimeoutMs: number;
}

interface Slot {
  slot: number;
  worker: Worker | undefined;
  listening: boolean;
  /** The worker stops on a signal of its own (systemd's, a terminal's): not replaced. */
  stoppingOnItsOwn: boolean;
  listeningSince: number;
  crashesInARow: number;
  respawn: NodeJS.Timeout | undefined;
  /** Kills the worker if it has not listened within startTimeoutMs. */
  startDeadline: NodeJS.Timeout | undefined;
  /** The worker was killed for not listening in time: its exit says so instead of "ended". */
  startTimedOut: boolean;
}

/** Sources paused until a destination drains: one 'drain' listener per destination, however many workers wait. */
const drainWaiters = new Map<NodeJS.WriteStream, Set<Readable>>();

/** Copies a worker's output to ours a whole line at a time, so concurrent workers never cut into each other's JSON lines. */
function forwardLines(from: Readable | null, to: NodeJS.WriteStream): void {
  if (!from) return;
  let partial = '';
  from.setEncoding('utf8');
  from.on('data', (chunk: string) => {
    const end = chunk.lastIndexOf('\n');
    if (end === -1 && partial.length + chunk.length < MAX_LINE_CHARS) {
      partial += chunk;
      return;
    }
    const lines = end === -1 ? `${partial}${chunk}\n` : partial + chunk.slice(0, end + 1);
    partial = end === -1 ? '' : chunk.slice(end + 1);
    if (to.write(lines)) return;
    from.pause();
    let waiting = drainWaiters.get(to);
    if (!waiting) {
      const paused = new Set<Readable>();
      drainWaiters.set(to, paused);
      waiting = paused;
      to.once('drain', () => {
        drainWaiters.delete(to);
        for (const source of paused) source.resume();
      });
    }
    waiting.add(from);
  });
  from.on('end', () => {
    if (partial) to.write(`${partial}\n`);
  });
}

/** The series of the gauges read from the database: every worker reads the same, so they are given once, without a worker label. */
function withoutWorkerLabel(metric: WorkerMetrics[number]): WorkerMetrics[number] {
  if (metric.aggregator !== 'first') return metric;
  return { ...metric, values: metric.values.map((v) => ({ ...v, labels: Object.fromEntries(Object.entries(v.labels).filter(([k]) => k !== 'worker')) })) };
}

/**
 * Runs the primary until every worker has stopped: resolves 0, or 1 after a second signal
 * (the workers killed); throws MESH_ERR_WORKER_FAILED when the workers could not be kept running.
 */
export async function runPrimary(options: PrimaryOptions): Promise<number> {
  const { logger, workers } = options;
  await options.prepare();

  const slots = new Map<number, Slot>();
  const registry = new client.Registry();
  new client.Gauge({
    name: 'meshanics_workers',
    help: 'serve --workers: workers listening',
    registers: [registry],
    collect() {
      this.set([...slots.values()].filter((s) => s.listening).length);
    },
  });
  const restarts = new client.Counter({
    name: 'meshanics_worker_restarts_total',
    help: 'serve --workers: workers started again after they ended unexpectedly',
    registers: [registry],
  });
  const up = new client.Gauge({
    name: 'meshanics_worker_up',
    help: 'serve --workers: 1 when the worker sent its figures for this scrape, 0 when it is listening but did not (within 5 s) or is not listening',
    labelNames: ['worker'],
    registers: [registry],
  });

  let phase: 'starting' | 'running' | 'stopping' = 'starting';
  let failure: MeshError | undefined;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const killTimers = new Set<NodeJS.Timeout>();
  let collects = 0;
  const collecting = new Map<number, { worker: Worker; settle(reply: Extract<WorkerMessage, { type: 'meshanics:collected' }> | Error): void }>();
  let exitCode = 0;

  // A worker that died a moment ago may still look connected: the send fails with EPIPE, given
  // to the callback (and to 'error', listened to in fork) instead of being thrown at the primary.
  const send = (worker: Worker, message: PrimaryMessage): void => {
    if (worker.isConnected()) worker.send(message, undefined, () => undefined);
  };
  const alive = (): Slot[] => [...slots.values()].filter((s) => s.worker !== undefined);

  const fork = (state: Slot): void => {
    state.respawn = undefined;
    state.listening = false;
    state.stoppingOnItsOwn = false;
    state.startTimedOut = false;
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(state.slot) });
    state.worker = worker;
    logger.info({ worker: state.slot, pid: worker.process.pid }, 'worker starting');
    // Without a deadline a worker that hangs while starting (a database that accepts and never
    // answers: pg waits for ever by default) would hold the whole start, or leave its slot
    // silently empty when it was a replacement.
    state.startDeadline = setTimeout(() => {
      state.startDeadline = undefined;
      if (state.worker !== worker || state.listening) return;
      state.startTimedOut = true;
      logger.error({ worker: state.slot, pid: worker.process.pid, startTimeoutMs: options.startTimeoutMs }, 'worker did not listen in time: killed');
      worker.process.kill('SIGKILL');
    }, options.startTimeoutMs);
    worker.on('error', (err) => logger.warn({ err, worker: state.slot, pid: worker.process.pid }, 'worker channel error'));
    forwardLines(worker.process.stdout, process.stdout);
    forwardLines(worker.process.stderr, process.stderr);
    worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) => onExit(state, worker, code, signal));
  };

  const stopAll = (reason: string): void => {
    if (phase === 'stopping') return;
    phase = 'stopping';
    logger.info({ reason, workers: alive().length }, 'stopping the workers');
    for (const state of slots.values()) {
      clearTimeout(state.respawn);
      // The drain's own kill timer bounds a starting worker from here on.
      clearTimeout(state.startDeadline);
    }
    for (const state of alive()) {
      const worker = state.worker!;
      // Over the channel, not as a signal: a worker that a terminal's Ctrl-C or systemd's stop
      // has signalled already would take a second signal for "now" (cluster/worker.ts). A
      // worker keeps the request from its first moment, even while it starts.
      if (worker.isConnected()) send(worker, { type: 'meshanics:shutdown' });
      else if (!state.stoppingOnItsOwn) worker.process.kill('SIGTERM');
      const timer = setTimeout(() => {
        logger.warn({ worker: state.slot, pid: worker.process.pid }, 'worker did not stop in time: killed');
        worker.process.kill('SIGKILL');
      }, options.stopTimeoutMs);
      timer.unref();
      killTimers.add(timer);
    }
    if (alive().length === 0) finish();
  };

  const onExit = (state: Slot, worker: Worker, code: number | null, signal: NodeJS.Signals | null): void => {
    if (state.worker !== worker) return;
    const wasListening = state.listening;
    state.worker = undefined;
    state.listening = false;
    clearTimeout(state.startDeadline);
    const exit = { worker: state.slot, pid: worker.process.pid, code, signal };
    // A worker that ended by itself as its deadline fired ended, whatever the deadline says.
    const timedOut = state.startTimedOut && signal === 'SIGKILL';
    const how = timedOut ? `did not listen within ${options.startTimeoutMs / 1000} s` : `ended before it was listening (exit code ${code}, signal ${signal})`;
    for (const [id, pending] of collecting) {
      if (pending.worker !== worker) continue;
      collecting.delete(id);
      pending.settle(new Error(`worker ${state.slot} ended`));
    }
    if (phase === 'stopping') {
      if (code === 0) logger.info(exit, 'worker stopped');
      else logger.warn(exit, 'worker stopped');
    } else if (phase === 'starting' && !wasListening) {
      // A bad option, a port in use, a database that refuses: starting again would fail the same way.
      logger.error(exit, timedOut ? 'worker did not listen in time: stopping' : 'worker ended before it was listening: stopping');
      failure = new MeshError('MESH_ERR_WORKER_FAILED', `worker ${state.slot} ${how}`);
      stopAll('a worker failed to start');
    } else if (state.stoppingOnItsOwn) {
      logger.warn(exit, 'worker stopped on a signal of its own: not replaced (signal the primary to stop the server)');
      slots.delete(state.slot);
    } else {
      // A replacement that ends before listening counts as another crash in a row.
      if (wasListening && Date.now() - state.listeningSince > STABLE_MS) state.crashesInARow = 0;
      state.crashesInARow += 1;
      if (state.crashesInARow >= MAX_CRASHES_IN_A_ROW) {
        logger.error({ ...exit, crashesInARow: state.crashesInARow }, 'worker keeps ending: stopping');
        failure = new MeshError(
          'MESH_ERR_WORKER_FAILED',
          `worker ${state.slot} ended ${state.crashesInARow} times in a row (the last ${wasListening ? `with exit code ${code}, signal ${signal}` : how})`,
        );
        stopAll('a worker keeps ending');
      } else {
        restarts.inc();
        const delayMs = RESPAWN_MIN_MS * 2 ** (state.crashesInARow - 1);
        logger.error({ ...exit, restartInMs: delayMs }, 'worker ended unexpectedly: starting another');
        state.respawn = setTimeout(() => fork(state), delayMs);
      }
    }
    if (alive().length === 0 && (phase === 'stopping' || [...slots.values()].every((s) => s.respawn === undefined))) {
      for (const timer of killTimers) clearTimeout(timer);
      finish();
    }
  };

  const collectFrom = (state: Slot): Promise<WorkerMetrics> =>
    new Promise((resolve, reject) => {
      const worker = state.worker!;
      const id = ++collects;
      const timer = setTimeout(() => {
        collecting.delete(id);
        reject(new Error(`worker ${state.slot} did not send its metrics within ${COLLECT_TIMEOUT_MS} ms`));
      }, COLLECT_TIMEOUT_MS);
      collecting.set(id, {
        worker,
        settle(reply) {
          clearTimeout(timer);
          if (reply instanceof Error) reject(reply);
          else if (reply.error !== undefined) reject(new Error(`worker ${state.slot}: ${reply.error}`));
          else resolve(reply.metrics);
        },
      });
      send(worker, { type: 'meshanics:collect', id });
    });

  // Each worker's series keep their worker label, so a worker left out (slow, ending) or
  // replaced changes only its own series; meshanics_worker_up says which were left out.
  const gather = async (): Promise<{ contentType: string; body: string }> => {
    const states = [...slots.values()];
    const results = await Promise.all(
      states.map((state) => (state.listening && state.worker?.isConnected() ? collectFrom(state).catch((err: Error) => err) : Promise.resolve(undefined))),
    );
    const perWorker: WorkerMetrics[] = [];
    states.forEach((state, i) => {
      const result = results[i];
      up.set({ worker: String(state.slot) }, Array.isArray(result) ? 1 : 0);
      if (Array.isArray(result)) perWorker.push(result.map(withoutWorkerLabel));
      else if (result instanceof Error) logger.warn({ err: result, worker: state.slot }, "a scrape went without a worker's figures");
    });
    const all = client.AggregatorRegistry.aggregate([...perWorker, await registry.getMetricsAsJSON()]);
    return { contentType: all.contentType, body: await all.metrics() };
  };

  const onMessage = (worker: Worker, message: unknown): void => {
    if (!isWorkerMessage(message)) return;
    const state = [...slots.values()].find((s) => s.worker === worker);
    switch (message.type) {
      case 'meshanics:listening':
        // Sent just before its deadline killed it, and read after: it is not listening.
        if (!state || state.startTimedOut) return;
        state.listening = true;
        state.listeningSince = Date.now();
        clearTimeout(state.startDeadline);
        logger.info({ worker: state.slot, pid: worker.process.pid }, 'worker listening');
        if (phase === 'starting' && [...slots.values()].every((s) => s.listening)) {
          phase = 'running';
          reportListening(message.addresses);
        }
        return;
      case 'meshanics:stopping':
        if (state) state.stoppingOnItsOwn = true;
        return;
      case 'meshanics:collected':
        collecting.get(message.id)?.settle(message);
        collecting.delete(message.id);
        return;
      case 'meshanics:scrape': {
        const { id } = message;
        gather().then(
          (text) => send(worker, { type: 'meshanics:scraped', id, ...text }),
          (err: unknown) => send(worker, { type: 'meshanics:scrape-failed', id, error: (err as Error).message }),
        );
        return;
      }
    }
  };
  cluster.on('message', onMessage);

  const reportListening = (addresses: WorkerAddresses): void => {
    logger.info(
      {
        workers,
        pids: alive().map((s) => s.worker!.process.pid),
        grpc: addresses.grpc,
        artifacts: addresses.artifacts,
        enroll: addresses.enroll,
        ...(addresses.api ? { api: addresses.api } : {}),
      },
      'workers listening',
    );
  };

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals === 1) return stopAll(signal);
    // A second signal means "now", as for a single process.
    logger.warn({ signal }, 'second signal: killing the workers');
    for (const state of alive()) state.worker!.process.kill('SIGKILL');
    exitCode = 1;
  };
  const onHangup = (): void => {
    // The REST API certificate is each worker's to reload; one still starting reads the files
    // as it starts (and has a handler for SIGHUP only from its first moment on).
    for (const state of alive()) if (state.listening) state.worker!.process.kill('SIGHUP');
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHangup);

  // The workers run this same command line; silent: their output comes through forwardLines.
  cluster.setupPrimary({ silent: true });
  logger.info({ workers }, 'starting the workers');
  for (let slot = 1; slot <= workers; slot++) {
    const state: Slot = {
      slot,
      worker: undefined,
      listening: false,
      stoppingOnItsOwn: false,
      listeningSince: 0,
      crashesInARow: 0,
      respawn: undefined,
      startDeadline: undefined,
      startTimedOut: false,
    };
    slots.set(slot, state);
    fork(state);
  }
  await finished;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  process.off('SIGHUP', onHangup);
  cluster.off('message', onMessage);
  logger.info('server stopped');
  if (failure) throw failure;
  return exitCode;
}
