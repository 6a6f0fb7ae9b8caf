// SQLite WAL checkpoints in a worker thread (store/sqlite-checkpointer.ts): the server's
// writing connection never checkpoints on the event loop, the worker copies the log back into
// the database file, and when the worker is gone the writer checkpoints itself again.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteDb } from '../src/store/index.js';
import { tempDir } from './helpers.js';

/** Writes about `pages` 4 KiB pages into the log, in transactions of 50 rows. */
async function fillLog(db: SqliteDb, pages: number): Promise<void> {
  await db.exec('CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, body BLOB NOT NULL)');
  for (let row = 0; row < pages; row += 50) {
    await db.writeTransaction(async () => {
      for (let i = 0; i < 50; i++) await db.run('INSERT INTO filler (body) VALUES (?)', [Buffer.alloc(4000, i)]);
    });
  }
}

const autocheckpoint = (db: SqliteDb) => Number(db.raw.pragma('wal_autocheckpoint', { simple: true }));

describe('SQLite checkpoints off the event loop', () => {
  it('leaves the log to the worker, which copies it into the database file', async () => {
    const file = path.join(tempDir(), 'ckpt.db');
    // An interval longer than the test: only the checkpoint asked for below runs.
    const db = new SqliteDb(file, undefined, { backgroundCheckpoints: { intervalMs: 3_600_000 } });
    try {
      expect(autocheckpoint(db)).toBe(0);
      await fillLog(db, 1500);
      // With SQLite's default the writer would have checkpointed at 1,000 pages and started
      // the log over; here every frame since the start is still in it.
      const result = await db.checkpointer!.checkpointNow();
      expect(result.logFrames).toBeGreaterThan(1500);
      expect(result.checkpointedFrames).toBe(result.logFrames);
      // The database file alone (without its log) now holds every row.
      const copy = path.join(tempDir(), 'copy.db');
      fs.copyFileSync(file, copy);
      const alone = new Database(copy, { readonly: true });
      try {
        expect(alone.prepare('SELECT COUNT(*) AS n FROM filler').get()).toEqual({ n: 1500 });
      } finally {
        alone.close();
      }
    } finally {
      await db.close();
    }
    // The last connection to close folded the log back and removed it.
    expect(fs.existsSync(`${file}-wal`)).toBe(false);
  });

  it('checkpoints on the writer again when the worker is gone', async () => {
    const failures: Error[] = [];
    const db = new SqliteDb(path.join(tempDir(), 'ckpt.db'), undefined, { backgroundCheckpoints: { onFailure: (err) => failures.push(err) } });
    try {
      expect(autocheckpoint(db)).toBe(0);
      const worker = (db.checkpointer as unknown as { worker: Worker }).worker;
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      await worker.terminate();
      await exited;
      expect(autocheckpoint(db)).toBe(1000);
      expect(failures).toHaveLength(1);
      await fillLog(db, 1500);
      const [state] = db.raw.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
      // The writer started the log over after its own checkpoint at 1,000 pages.
      expect(state!.log).toBeLessThan(1000);
    } finally {
      await db.close();
    }
  });

  it('keeps SQLite\'s own checkpoints where nobody asked for the worker (one-shot commands)', async () => {
    const db = new SqliteDb(path.join(tempDir(), 'ckpt.db'));
    try {
      expect(db.checkpointer).toBeUndefined();
      expect(autocheckpoint(db)).toBe(1000);
    } finally {
      await db.close();
    }
  });
});
