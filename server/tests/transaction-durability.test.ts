// Relaxed durability (heartbeat liveness): only the transaction that asks for it commits
// without waiting for the disk; every other transaction stays fully durable, also after a
// relaxed one failed.
import { describe, expect, it } from 'vitest';
import { openStore, SqlStore, type Store } from '../src/store/index.js';
import { testEngines } from './engines.js';

const { engines } = await testEngines();

/** The engine's own answer to "does a commit wait for the disk here?". */
async function durability(store: Store): Promise<string> {
  const { db } = store as SqlStore;
  if (db.dialect === 'sqlite') {
    // 2 = FULL, 1 = NORMAL
    const row = await db.get('PRAGMA synchronous');
    return String(Object.values(row!)[0]);
  }
  return String((await db.get('SHOW synchronous_commit'))!.synchronous_commit);
}

describe.each(engines)('write transactions on $name', (engine) => {
  const durable = engine.name === 'sqlite' ? '2' : 'on';
  const relaxed = engine.name === 'sqlite' ? '1' : 'off';

  it('relax durability only inside the transaction that asks, and restore it after a failure', async () => {
    const store = await openStore(await engine.fresh());
    const { db } = store as SqlStore;
    try {
      expect(await durability(store)).toBe(durable);
      const inside = await db.writeTransaction(() => durability(store), { relaxedDurability: true });
      expect(inside).toBe(relaxed);
      expect(await durability(store)).toBe(durable);
      // A nested call joins the outer transaction and keeps its durability.
      expect(await db.writeTransaction(() => db.writeTransaction(() => durability(store), { relaxedDurability: true }))).toBe(durable);

      await expect(
        db.writeTransaction(
          async () => {
            throw new Error('boom');
          },
          { relaxedDurability: true },
        ),
      ).rejects.toThrow('boom');
      expect(await durability(store)).toBe(durable);
      expect(await db.writeTransaction(() => durability(store))).toBe(durable);
    } finally {
      await store.close();
    }
  });

  it('commits last-seen batches that a later read sees', async () => {
    const store = await openStore(await engine.fresh());
    try {
      const { device } = await store.ensureDevice({ spiffeId: 'spiffe://t/lab/d1', fleet: 'lab', name: 'd1', now: '2026-01-01T00:00:00.000Z' });
      await store.touchLastSeen([{ deviceId: device.id, at: '2026-01-02T00:00:00.000Z' }]);
      expect((await store.getDeviceById(device.id))!.lastSeenAt).toBe('2026-01-02T00:00:00.000Z');
      expect(await durability(store)).toBe(durable);
    } finally {
      await store.close();
    }
  });
});
