// WAL checkpoints off the event loop. SQLite copies the write-ahead log back into the
// database file (a checkpoint, https://www.sqlite.org/wal.html#checkpointing) from whichever
// connection commits when the log passes 1,000 pages, and better-sqlite3 runs every statement
// on the event loop: a commit that happens to checkpoint writes up to 4 MiB into the database
// file and fsyncs it while every heartbeat waits. The server turns automatic checkpoints off on
// its writing connection and a worker thread with a connection of its own runs a PASSIVE
// checkpoint every interval instead (PASSIVE: it never waits for readers or writers, and they
// never wait for it; what it cannot copy now is copied next time).
//
// The worker is given its code as a string: it must run the same in the built server and under
// vitest, which transforms TypeScript for the main thread only.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

export interface CheckpointResult {
  /** Frames in the WAL, and how many of them are now in the database file. */
  logFrames: number;
  checkpointedFrames: number;
  /** True when another connection's checkpoint was running (nothing was done this time). */
  busy: boolean;
  /** How long it took the worker (copying frames and the fsync of the database file). */
  seconds: number;
}

export interface SqliteCheckpointerOptions {
  /** Between checkpoints (default 1000 ms). */
  intervalMs?: number;
  /** Each checkpoint's outcome (tests, metrics). */
  onCheckpoint?: (result: CheckpointResult) => void;
  /**
   * The worker stopped without being asked (it failed to open the database, or crashed): the
   * caller must checkpoint again itself, or the log grows without bound.
   */
  onFailure: (error: Error) => void;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
// Waiting is harmless here: this thread does nothing else.
db.pragma('busy_timeout = 1000');
const checkpoint = (requested) => {
  const start = performance.now();
  const [r] = db.pragma('wal_checkpoint(PASSIVE)');
  const seconds = (performance.now() - start) / 1000;
  parentPort.postMessage({ type: 'checkpoint', requested, busy: r.busy === 1, logFrames: r.log, checkpointedFrames: r.checkpointed, seconds });
};
const timer = setInterval(() => checkpoint(false), workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m === 'now') checkpoint(true);
  if (m === 'stop') {
    clearInterval(timer);
    db.close();
    parentPort.close();
  }
});
parentPort.postMessage({ type: 'ready' });
`;

export class SqliteCheckpointer {
  private readonly worker: Worker;
  private stopping = false;
  private readonly exited: Promise<void>;
  private readonly waiters: Array<(r: CheckpointResult) => void> = [];

  private constructor(file: string, options: SqliteCheckpointerOptions) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { file, driver: createRequire(import.meta.url).resolve('better-sqlite3'), intervalMs: options.intervalMs ?? 1000 },
    });
    // Never keeps the process alive on its own: the store's close() stops it.
    this.worker.unref();
    this.worker.on('message', (m: { type: string; requested: boolean } & CheckpointResult) => {
      if (m.type !== 'checkpoint') return;
      const result = { busy: m.busy, logFrames: m.logFrames, checkpointedFrames: m.checkpointedFrames, seconds: m.seconds };
      options.onCheckpoint?.(result);
      if (m.requested) this.waiters.shift()?.(result);
    });
    let failure: Error | undefined;
    this.worker.on('error', (err) => (failure = err));
    this.exited = new Promise((resolve) => {
      this.worker.once('exit', (code) => {
        if (!this.stopping) options.onFailure(failure ?? new Error(`the checkpoint worker exited with code ${code}`));
        resolve();
      });
    });
  }

  /** Starts the worker on the database at `file` (in WAL mode already). */
  static start(file: string, options: SqliteCheckpointerOptions): SqliteCheckpointer {
    return new SqliteCheckpointer(file, options);
  }

  /** Runs a checkpoint now (tests); resolves with its outcome (never, if the worker is gone). */
  checkpointNow(): Promise<CheckpointResult> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.worker.postMessage('now');
    });
  }

  /** Stops the worker and closes its connection (before the store closes its own). */
  async stop(): Promise<void> {
    this.stopping = true;
    // Referenced again while it closes: waiting for an unreferenced worker's exit does not keep
    // the event loop alive, and the process would end before the store finished closing.
    this.worker.ref();
    this.worker.postMessage('stop');
    await this.exited;
  }
}
