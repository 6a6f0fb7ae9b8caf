// The heartbeat batcher (heartbeat-batcher.ts) against a real SQLite store: which installed set
// a device ends up with when its heartbeats and the batch's writes interleave. The store's
// replaceInstalledSets is wrapped only to hold a flush open or fail it once, at the moment the
// scenario needs (the interleaving cannot be timed from outside otherwise).
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HeartbeatBatcher, type HeartbeatInstalled } from '../src/device-api/heartbeat-batcher.js';
import { silentLogger } from '../src/observability/log.js';
import { installedDigest, openStore, type InstalledSetWrite, type Store } from '../src/store/index.js';
import { tempDir } from './helpers.js';

const stores: Store[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

const v = (version: string) => [{ name: 'detector', kind: 'model', version, sha256: version.replace(/\D/g, '').padEnd(64, '0').slice(0, 64), state: 'HEALTHY' }];
const at = (s: number) => new Date(Date.UTC(2026, 11, 4, 12, 0, s)).toISOString();

/** What a heartbeat hands the batcher: the set it listed and the digest stored when it was answered. */
function listed(set: ReturnType<typeof v> | [], storedDigest: string | null): HeartbeatInstalled {
  return { set, digest: installedDigest(set), storedDigest };
}

async function storeWithDevice(): Promise<{ store: Store; deviceId: string; writes: InstalledSetWrite[][]; hold: () => () => void; failNext: () => void }> {
  const store = await openStore(path.join(tempDir(), 'batcher.db'));
  stores.push(store);
  const { device } = await store.ensureDevice({ spiffeId: 'spiffe://t/lab/b-1', fleet: 'lab', name: 'b-1', now: at(0) });
  const writes: InstalledSetWrite[][] = [];
  let gate: Promise<void> | undefined;
  let fail = false;
  const real = store.replaceInstalledSets.bind(store);
  store.replaceInstalledSets = async (entries) => {
    writes.push([...entries]);
    if (gate) await gate;
    if (fail) {
      fail = false;
      throw new Error('database went away');
    }
    return real(entries);
  };
  return {
    store,
    deviceId: device.id,
    writes,
    hold: () => {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return () => {
        gate = undefined;
        release();
      };
    },
    failNext: () => (fail = true),
  };
}

const EMPTY = installedDigest([]);

describe('heartbeat batcher: installed sets', () => {
  it('withdraws a queued set when a later heartbeat lists the stored set again', async () => {
    const { store, deviceId, writes } = await storeWithDevice();
    const batcher = new HeartbeatBatcher(store, silentLogger(), 600_000);
    batcher.record(deviceId, at(1), listed(v('1.0.0'), EMPTY));
    batcher.record(deviceId, at(2), listed([], EMPTY));
    await batcher.flush();
    expect(writes).toEqual([]);
    expect(await store.listInstalled(deviceId)).toEqual([]);
  });

  it('ignores a heartbeat received before the one whose set is queued', async () => {
    const { store, deviceId } = await storeWithDevice();
    const batcher = new HeartbeatBatcher(store, silentLogger(), 600_000);
    batcher.record(deviceId, at(2), listed(v('2.0.0'), EMPTY));
    batcher.record(deviceId, at(1), listed([], EMPTY));
    await batcher.flush();
    expect(await store.listInstalled(deviceId)).toMatchObject([{ version: '2.0.0' }]);
  });

  it('follows a set already being written with the stored set a later heartbeat listed again', async () => {
    const { store, deviceId, hold } = await storeWithDevice();
    const batcher = new HeartbeatBatcher(store, silentLogger(), 600_000);
    batcher.record(deviceId, at(1), listed(v('1.0.0'), EMPTY));
    const release = hold();
    const first = batcher.flush();
    await new Promise((r) => setTimeout(r, 10));
    // Answered while 1.0.0 is being written: the device is back to the empty set it had.
    batcher.record(deviceId, at(2), listed([], EMPTY));
    release();
    await first;
    expect(await store.listInstalled(deviceId)).toMatchObject([{ version: '1.0.0' }]);
    await batcher.flush();
    expect(await store.listInstalled(deviceId)).toEqual([]);
    expect((await store.getCallingDevice('spiffe://t/lab/b-1'))!.installedDigest).toBe(EMPTY);
  });

  it('keeps a failed batch for the next flush, unless a later heartbeat of the device decided otherwise', async () => {
    const { store, deviceId, failNext, writes } = await storeWithDevice();
    const { device: other } = await store.ensureDevice({ spiffeId: 'spiffe://t/lab/b-2', fleet: 'lab', name: 'b-2', now: at(0) });
    const batcher = new HeartbeatBatcher(store, silentLogger(), 600_000);
    batcher.record(deviceId, at(1), listed(v('1.0.0'), EMPTY));
    batcher.record(other.id, at(1), listed(v('1.0.0'), EMPTY));
    failNext();
    await batcher.flush();
    expect(await store.listInstalled(deviceId)).toEqual([]);
    // b-2 listed the stored (empty) set again after the failed flush: its older set is dropped.
    batcher.record(other.id, at(2), listed([], EMPTY));
    await batcher.flush();
    expect(writes.at(-1)!.map((w) => w.deviceId)).toEqual([deviceId]);
    expect(await store.listInstalled(deviceId)).toMatchObject([{ version: '1.0.0' }]);
    expect(await store.listInstalled(other.id)).toEqual([]);
  });

  it('writes what is pending on stop and does not retry a failed batch after it', async () => {
    const { store, deviceId, failNext, writes } = await storeWithDevice();
    const batcher = new HeartbeatBatcher(store, silentLogger(), 600_000);
    batcher.record(deviceId, at(1), listed(v('1.0.0'), EMPTY));
    failNext();
    await batcher.stop();
    expect(writes).toHaveLength(1);
    expect(batcher.size).toEqual({ seen: 0, installed: 0 });
    expect((await store.getDeviceById(deviceId))!.lastSeenAt).toBe(at(1));
  });
});
