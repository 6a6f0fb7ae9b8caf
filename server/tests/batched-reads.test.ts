// How the device API's reads are batched (batched-reads.ts). The read is a plain function
// here, not the store: the scenarios need a read held open until the test lets it finish,
// which a real database cannot be told to do. store.test.ts checks the store's batch reads
// (readHeartbeatStates, readReportingDevices) on both engines; the heartbeat and report tests
// over gRPC go through both.
import { describe, expect, it } from 'vitest';
import { BatchedReads } from '../src/batched-reads.js';
import type { HeartbeatState } from '../src/store/index.js';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

function stateOf(spiffeId: string): HeartbeatState {
  return {
    calling: {
      device: {
        id: `id-${spiffeId}`, spiffeId, fleet: 'f', name: spiffeId, hardware: null, agentVersion: null, tags: {}, capabilities: [],
        heartbeatIntervalSeconds: null, createdAt: 't', registeredAt: 't', lastSeenAt: null, lastReportSeq: 0,
      } as HeartbeatState['calling']['device'],
      installedDigest: null,
      pendingLogRequests: false,
    },
    desired: [],
  };
}

/** A read that records each batch and finishes only when the test releases it. */
function heldReads() {
  const batches: string[][] = [];
  const releases: Array<(fail?: Error) => void> = [];
  const read = (spiffeIds: readonly string[]) => {
    batches.push([...spiffeIds]);
    return new Promise<Array<HeartbeatState | undefined>>((resolve, reject) => {
      releases.push((fail) => (fail ? reject(fail) : resolve(spiffeIds.map((id) => (id === 'nobody' ? undefined : stateOf(id))))));
    });
  };
  return { batches, releases, read };
}

describe('batched reads', () => {
  it('reads calls of the same turn together, and those arriving while two reads are in flight in the next batch', async () => {
    const { batches, releases, read } = heldReads();
    const sizes: number[] = [];
    const reads = new BatchedReads(read, { observeBatch: (n) => sizes.push(n) });
    const first = [reads.read('a'), reads.read('b')];
    await turn();
    const second = reads.read('c');
    await turn();
    expect(batches).toEqual([['a', 'b'], ['c']]);
    // Both slots are taken: these wait, together, however many turns pass.
    const third = [reads.read('d'), reads.read('e')];
    await turn();
    const late = reads.read('f');
    await turn();
    expect(batches).toHaveLength(2);
    releases[0]!();
    expect((await Promise.all(first)).map((s) => s?.calling.device.id)).toEqual(['id-a', 'id-b']);
    await turn();
    expect(batches).toEqual([['a', 'b'], ['c'], ['d', 'e', 'f']]);
    releases[1]!();
    releases[2]!();
    expect((await second)?.calling.device.spiffeId).toBe('c');
    expect((await Promise.all([...third, late])).map((s) => s?.calling.device.spiffeId)).toEqual(['d', 'e', 'f']);
    expect(sizes).toEqual([2, 1, 3]);
  });

  it('splits a burst into batches of at most maxBatch, read one after another when one slot is allowed', async () => {
    const { batches, releases, read } = heldReads();
    const reads = new BatchedReads(read, { concurrency: 1, maxBatch: 2 });
    const all = ['a', 'b', 'c', 'd', 'e'].map((id) => reads.read(id));
    await turn();
    expect(batches).toEqual([['a', 'b']]);
    for (let i = 0; i < 3; i++) {
      releases[i]!();
      await turn();
    }
    expect(batches).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    expect((await Promise.all(all)).map((s) => s?.calling.device.spiffeId)).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('answers undefined for a certificate without a device, and fails only the calls of a read that failed', async () => {
    const { releases, read } = heldReads();
    const reads = new BatchedReads(read, { concurrency: 1 });
    const failed = [reads.read('a'), reads.read('nobody')];
    await turn();
    const next = [reads.read('nobody'), reads.read('b')];
    await turn();
    releases[0]!(new Error('connection lost'));
    await expect(Promise.all(failed)).rejects.toThrow('connection lost');
    await turn();
    releases[1]!();
    expect((await Promise.all(next)).map((s) => s?.calling.device.spiffeId)).toEqual([undefined, 'b']);
    // The slot was given back: a later heartbeat is read at once.
    const after = reads.read('c');
    await turn();
    releases[2]!();
    expect((await after)?.calling.device.spiffeId).toBe('c');
  });
});
