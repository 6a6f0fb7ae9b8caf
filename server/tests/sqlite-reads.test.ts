// SQLite: reads made outside any transaction (a heartbeat's) run on their own connection and
// never wait behind another async context's write transaction; they see what is committed.
// Reads inside the transaction see its own uncommitted writes.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore, type SqlStore } from '../src/store/index.js';
import { tempDir } from './helpers.js';

describe('SQLite reads beside a write transaction', () => {
  it('answer at once with the committed state while a transaction is held open, and see its writes after the commit', async () => {
    const store = (await openStore(path.join(tempDir(), 'reads.db'))) as SqlStore;
    const { db } = store;
    try {
      const { device } = await store.ensureDevice({ spiffeId: 'spiffe://t/lab/r1', fleet: 'lab', name: 'r1', now: '2026-01-01T00:00:00.000Z' });
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let insideSaw: unknown;
      const tx = db.writeTransaction(async () => {
        await db.run('UPDATE devices SET name = ? WHERE id = ?', ['renamed', device.id]);
        insideSaw = (await db.get('SELECT name FROM devices WHERE id = ?', [device.id]))!.name;
        await held;
      });
      await new Promise((r) => setTimeout(r, 20));
      expect(insideSaw).toBe('renamed');

      const outside = await Promise.race([db.get('SELECT name FROM devices WHERE id = ?', [device.id]), new Promise((r) => setTimeout(() => r('blocked'), 1000))]);
      release();
      await tx;
      expect(outside).toEqual({ name: 'r1' });

      expect(await db.get('SELECT name FROM devices WHERE id = ?', [device.id])).toEqual({ name: 'renamed' });
    } finally {
      await store.close();
    }
  });
});
