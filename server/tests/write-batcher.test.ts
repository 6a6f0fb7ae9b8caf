// Group commit of status reports: writes queued together share a transaction; a caller is
// answered only after its write is committed, and one failing write takes nothing else of its
// batch with it (the batch is rolled back and its writes run again one by one).
import { describe, expect, it } from 'vitest';
import { openStore, type SqlStore, type Store } from '../src/store/index.js';
import { WriteBatcher } from '../src/store/write-batcher.js';
import { testEngines } from './engines.js';

const { engines } = await testEngines();

describe.each(engines)('WriteBatcher on $name', (engine) => {
  it('commits a burst of writes in a few transactions, answers each after its commit, and isolates a failing one', async () => {
    const location = await engine.fresh();
    const store = (await openStore(location)) as SqlStore;
    // A second handle on the same database: what is committed is what it can see.
    const observer = await openStore(location);
    try {
      let transactions = 0;
      const counting: Pick<Store, 'withRowLocks'> = {
        withRowLocks: (fn) => {
          if (!store.db.inTransaction()) transactions += 1;
          return store.withRowLocks(fn);
        },
      };
      // Each batch makes its devices; a batch holding wb-7 fails as a whole.
      const batcher = new WriteBatcher<string, string>(
        counting,
        async (batch) => {
          const ids: string[] = [];
          for (const name of batch) {
            const { device } = await store.ensureDevice({ spiffeId: `spiffe://t/lab/${name}`, fleet: 'lab', name, now: new Date().toISOString() });
            if (name === 'wb-7') throw new Error('refused');
            ids.push(device.id);
          }
          return ids;
        },
        16,
      );
      const names = Array.from({ length: 60 }, (_, i) => `wb-${i}`);
      const results = await Promise.allSettled(
        names.map((name) =>
          batcher.write(name).then(async (id) => {
            // Answered only once the transaction holding this write has committed.
            expect(await observer.getDeviceById(id)).toBeDefined();
            return id;
          }),
        ),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(59);
      expect((results[7] as PromiseRejectedResult).reason.message).toBe('refused');
      // The failing write's row was rolled back; everything else is there, once.
      expect(await observer.getDeviceByName('lab', 'wb-7')).toBeUndefined();
      expect(await observer.getDeviceByName('lab', 'wb-59')).toBeDefined();
      expect(await observer.countDevices()).toBe(59);
      // 60 writes, batches of at most 16: the first runs alone, the rest queue behind it; the
      // batch holding the failing write is tried once, then its 16 writes run one by one.
      expect(transactions).toBeGreaterThanOrEqual(4 + 1 + 16);
      expect(transactions).toBeLessThanOrEqual(6 + 1 + 16);
    } finally {
      await observer.close();
      await store.close();
    }
  });
});
