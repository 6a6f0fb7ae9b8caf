// The device-state feed (migration 6's triggers): every committed write that can change a
// device's heartbeat answer reaches the listener, whoever made it, and liveness writes do not.
// A cache trusts what it holds only while caughtUp() is true, so the property under test is:
// once a write has returned and caughtUp() says true, the write's change has been delivered.
import { afterEach, describe, expect, it } from 'vitest';
import type { WriteWatcher } from '../src/store/db-postgres.js';
import { DEVICE_COLUMNS_NOT_WATCHED, DEVICE_COLUMNS_WATCHED, DEVICE_STATE_CHANNEL } from '../src/store/migration-6.js';
import { ASSIGNMENT_COLUMNS_NOT_WATCHED, ASSIGNMENT_COLUMNS_WATCHED, ROLLOUT_DEVICE_COLUMNS_NOT_WATCHED, ROLLOUT_DEVICE_COLUMNS_WATCHED } from '../src/store/migration-7.js';
import { openStore, SqlStore, type DeviceStateFeed, type Store } from '../src/store/index.js';
import { testEngines, type Engine } from './engines.js';

const { engines } = await testEngines();
const NOW = '2026-01-01T00:00:00.000Z';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Opened {
  store: Store;
  feed: DeviceStateFeed;
  seen: Array<string | null>;
  location: string;
}
const opened: Opened[] = [];
afterEach(async () => {
  for (const o of opened.splice(0)) {
    await o.feed.close();
    await o.store.close();
  }
});

async function open(engine: Engine): Promise<Opened> {
  const location = await engine.fresh();
  const store = await openStore(location);
  const seen: Array<string | null> = [];
  const feed = await store.openDeviceStateFeed((deviceId) => seen.push(deviceId));
  const o = { store, feed, seen, location };
  opened.push(o);
  await until(() => feed.caughtUp(), 'the feed follows');
  seen.length = 0;
  return o;
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

/** What the feed has delivered once it is caught up (SQLite: delivered by the call itself). */
async function delivered(o: Opened): Promise<Array<string | null>> {
  await until(() => o.feed.caughtUp(), 'the feed is caught up');
  return o.seen.splice(0);
}

describe.each(engines)('device state feed on $name', (engine) => {
  it('delivers the device of every write that changes its heartbeat answer, before it reports being caught up', async () => {
    const o = await open(engine);
    const { store } = o;
    const { device } = await store.ensureDevice({ spiffeId: 'spiffe://t/lab/d1', fleet: 'lab', name: 'd1', now: NOW });
    expect(await delivered(o)).toContain(device.id);

    await store.registerDevice({ spiffeId: device.spiffeId, fleet: 'lab', name: 'd1', profile: { hardware: null, agentVersion: '1.0.0', tags: {}, capabilities: [] }, now: NOW });
    expect(await delivered(o)).toContain(device.id);

    await (store as SqlStore).db.run('UPDATE devices SET tags = ? WHERE id = ?', ['{"site":"b"}', device.id]);
    if (engine.name === 'postgres') {
      // The write has returned; its notification (and the fence after it) cannot have been
      // read yet, no I/O having happened since: not caught up.
      expect(o.feed.caughtUp()).toBe(false);
    }
    expect(await delivered(o)).toEqual([device.id]);

    await store.replaceInstalled(device.id, [{ name: 'm', kind: 'model', version: '1', sha256: 'a'.repeat(64), state: 'HEALTHY' }], NOW);
    expect(await delivered(o)).toContain(device.id);

    await store.logRequests.insert({
      id: 'lr-1',
      deviceId: device.id,
      since: null,
      until: null,
      maxBytes: 1024,
      requestedAt: NOW,
      requestedBy: 'op',
      fulfilledAt: null,
      sizeBytes: null,
      sha256: null,
    });
    expect(await delivered(o)).toContain(device.id);

    await store.decommissionDevice(device.id, NOW);
    expect(await delivered(o)).toEqual([device.id]);
  });

  it('delivers nothing for liveness and report sequences, which never change an answer', async () => {
    const o = await open(engine);
    const { device } = await o.store.ensureDevice({ spiffeId: 'spiffe://t/lab/d2', fleet: 'lab', name: 'd2', now: NOW });
    await delivered(o);
    await o.store.touchLastSeen([{ deviceId: device.id, at: '2026-01-02T00:00:00.000Z' }]);
    const { db } = o.store as SqlStore;
    await db.run('UPDATE devices SET last_report_seq = last_report_seq + 1 WHERE id = ?', [device.id]);
    // A write that does change the answer, after them: once it is delivered, they would have been.
    await db.run('UPDATE devices SET heartbeat_interval_seconds = 7 WHERE id = ?', [device.id]);
    expect(await delivered(o)).toEqual([device.id]);
  });

  it("delivers nothing for an assignment moving along or rollout bookkeeping, and the device when a halted rollout's assignment leaves PENDING or a revert points at it", async () => {
    const o = await open(engine);
    const { store } = o;
    const { db } = store as SqlStore;
    const { device } = await store.ensureDevice({ spiffeId: 'spiffe://t/lab/d7', fleet: 'lab', name: 'd7', now: NOW });
    await store.insertArtifact({
      id: 'art-7',
      name: 'm',
      version: '1.0.0',
      kind: 'model',
      fileName: 'm.bin',
      targetPath: 'm/1.0.0/m.bin',
      sha256: 'c'.repeat(64),
      length: 1,
      spec: {},
      createdAt: NOW,
    });
    await db.run(
      `INSERT INTO rollouts (id, fleet, artifact_id, artifact_name, group_name, probe, strategy, status, current_wave, created_by, created_at, updated_at)
       VALUES ('ro-7', 'lab', 'art-7', 'm', 'all', '{}', '{}', 'running', 0, 'op', ?, ?)`,
      [NOW, NOW],
    );
    await store.insertAssignment({
      id: 'as-7',
      deviceId: device.id,
      artifactId: 'art-7',
      artifactName: 'm',
      rolloutId: 'ro-7',
      probe: { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 1, initialDelaySeconds: 0 },
      state: 'PENDING',
      reason: '',
      active: true,
      createdAt: NOW,
      updatedAt: NOW,
    });
    expect(await delivered(o)).toContain(device.id);
    // Rollout membership, and an assignment moving along in a running rollout: nothing.
    await store.withWriteLock(() =>
      db.run("INSERT INTO rollout_devices (rollout_id, device_id, artifact_name, active, wave, position) VALUES ('ro-7', ?, 'm', 1, 0, 0)", [device.id]),
    );
    await store.withWriteLock(() => db.run("UPDATE assignments SET state = 'DOWNLOADING' WHERE id = 'as-7'"));
    await store.withWriteLock(() => db.run("UPDATE assignments SET state = 'VERIFYING', reason = 'r', updated_at = ? WHERE id = 'as-7'", ['2026-01-02T00:00:00.000Z']));
    await store.withWriteLock(() =>
      db.run("UPDATE rollout_devices SET assignment_id = 'as-7', assigned_at = ?, wave = 1, position = 3, active = 0 WHERE rollout_id = 'ro-7'", [NOW]),
    );
    if (engine.name === 'postgres') {
      // The transactions announced nothing: no fence of theirs holds anyone back.
      expect(o.feed.caughtUp()).toBe(true);
    }
    // A halted rollout serves no pending assignment: there, whether it is pending is shown.
    await store.withWriteLock(() => db.run("UPDATE rollouts SET status = 'halted' WHERE id = 'ro-7'"));
    expect(await delivered(o)).toEqual([null]);
    await store.withWriteLock(() => db.run("UPDATE assignments SET state = 'PENDING' WHERE id = 'as-7'"));
    expect(await delivered(o)).toEqual([device.id]);
    await store.withWriteLock(() => db.run("UPDATE assignments SET state = 'DOWNLOADING' WHERE id = 'as-7'"));
    expect(await delivered(o)).toEqual([device.id]);
    // A revert pointing at the assignment is shown (it is served even from a halted rollout).
    await store.withWriteLock(() => db.run("UPDATE rollout_devices SET revert_assignment_id = 'as-7' WHERE rollout_id = 'ro-7'"));
    expect(await delivered(o)).toEqual([device.id]);
    await store.withWriteLock(() => db.run("UPDATE assignments SET active = 0 WHERE id = 'as-7'"));
    expect(await delivered(o)).toEqual([device.id]);
  });

  it('delivers a change of every device when an artifact or a rollout status changes', async () => {
    const o = await open(engine);
    const { db } = o.store as SqlStore;
    await o.store.insertArtifact({
      id: 'art-1',
      name: 'm',
      version: '1.0.0',
      kind: 'model',
      fileName: 'm.bin',
      targetPath: 'm/1.0.0/m.bin',
      sha256: 'b'.repeat(64),
      length: 1,
      spec: {},
      createdAt: NOW,
    });
    expect(await delivered(o)).toEqual([]);
    await db.run("UPDATE artifacts SET manifest = '{}' WHERE id = 'art-1'");
    expect(await delivered(o)).toEqual([null]);
  });

  it('delivers writes made behind the store, by another connection or process', async () => {
    const o = await open(engine);
    const { device } = await o.store.ensureDevice({ spiffeId: 'spiffe://t/lab/d3', fleet: 'lab', name: 'd3', now: NOW });
    await delivered(o);
    await engine.exec(o.location, `UPDATE devices SET decommissioned_at = '${NOW}' WHERE id = '${device.id}'`);
    // Another process's commit carries no fence of ours: it arrives when the database sends it.
    await until(() => o.feed.caughtUp() && o.seen.length > 0, "the other connection's write is delivered");
    expect(o.seen).toEqual([device.id]);
  });
});

describe.each(engines.filter((e) => e.name === 'postgres'))('device state feed on $name, losing its connection', (engine) => {
  it('says it is not caught up while its LISTEN connection is gone, then resets every device and follows again', async () => {
    const o = await open(engine);
    const dbName = new URL(o.location).pathname.slice(1);
    await engine.exec(o.location, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${dbName}' AND query LIKE 'LISTEN%'`);
    await until(() => !o.feed.caughtUp(), 'the feed notices');
    await until(() => o.feed.caughtUp(), 'the feed follows again');
    expect(o.seen).toContain(null);

    o.seen.length = 0;
    const { device } = await o.store.ensureDevice({ spiffeId: 'spiffe://t/lab/d4', fleet: 'lab', name: 'd4', now: NOW });
    expect(await delivered(o)).toContain(device.id);
  });
});

/**
 * Stops reading the feed's LISTEN socket until resume(). The two answers of a commit (COMMIT's
 * on a pool connection, the fence's NOTIFY on the LISTEN connection) come on two sockets and
 * the event loop may read them in either order; with this one paused, COMMIT's answer always
 * comes first, so the test sees the window in which the fence is still outstanding. (The
 * other order, fence first, is driven through the feed's methods in the test after the next.)
 */
function pauseListenConnection(feed: DeviceStateFeed): { resume(): void } {
  const client = (feed as unknown as { client?: { connection: { stream: NodeJS.ReadableStream } } }).client;
  if (!client) throw new Error('the feed has no LISTEN connection');
  client.connection.stream.pause();
  return { resume: () => client.connection.stream.resume() };
}

describe.each(engines.filter((e) => e.name === 'postgres'))('device state feed on $name, its fences', (engine) => {
  it('holds back, once a transaction has committed, only the devices it announced, until its fence is back', async () => {
    const o = await open(engine);
    const { db } = o.store as SqlStore;
    const { device: a } = await o.store.ensureDevice({ spiffeId: 'spiffe://t/lab/d8a', fleet: 'lab', name: 'd8a', now: NOW });
    const { device: b } = await o.store.ensureDevice({ spiffeId: 'spiffe://t/lab/d8b', fleet: 'lab', name: 'd8b', now: NOW });
    await delivered(o);
    const listening = pauseListenConnection(o.feed);
    await o.store.withWriteLock(() => db.run('UPDATE devices SET tags = ? WHERE id = ?', ['{"site":"c"}', a.id]));
    // Returned, and the fence cannot have been read yet (its socket is paused): b is not held
    // back, a is, and nothing has been delivered.
    expect(o.feed.caughtUp(b.id)).toBe(true);
    expect(o.feed.caughtUp(a.id)).toBe(false);
    expect(o.feed.caughtUp()).toBe(false);
    expect(o.seen).toEqual([]);
    listening.resume();
    expect(await delivered(o)).toEqual([a.id]);
    expect(o.feed.caughtUp(a.id)).toBe(true);
  });

  it("keeps kept answers when its fence is read before COMMIT's answer, and drops them when the fence was given up mid-commit", async () => {
    // Both orders happen with real connections (two sockets, read in whichever order the event
    // loop sees them) but cannot be forced; the feed's own methods are called in each order.
    const o = await open(engine);
    const watcher = o.feed as unknown as WriteWatcher & { notified(msg: { channel: string; payload: string }): void; settle(token: string, lost: boolean): void };
    const early = watcher.fence()!;
    watcher.notified({ channel: DEVICE_STATE_CHANNEL, payload: 'dev-x' });
    watcher.notified({ channel: DEVICE_STATE_CHANNEL, payload: `fence:${early.token}` });
    watcher.committed(early.token, ',dev-x');
    expect(o.seen).toEqual(['dev-x']);
    expect(o.feed.caughtUp()).toBe(true);

    o.seen.length = 0;
    const late = watcher.fence()!;
    watcher.settle(late.token, true); // its timeout
    expect(o.seen).toEqual([null]);
    // Answers read since may predate the commit, whose notifications are still to come.
    watcher.committed(late.token, ',dev-y');
    expect(o.seen).toEqual([null, null]);
  });

  it('holds back every device after a transaction that changed what every answer reads', async () => {
    const o = await open(engine);
    const { db } = o.store as SqlStore;
    const { device } = await o.store.ensureDevice({ spiffeId: 'spiffe://t/lab/d9', fleet: 'lab', name: 'd9', now: NOW });
    await o.store.insertArtifact({
      id: 'art-9',
      name: 'm',
      version: '1.0.0',
      kind: 'model',
      fileName: 'm.bin',
      targetPath: 'm/1.0.0/m.bin',
      sha256: 'd'.repeat(64),
      length: 1,
      spec: {},
      createdAt: NOW,
    });
    await delivered(o);
    const listening = pauseListenConnection(o.feed);
    await o.store.withWriteLock(() => db.run("UPDATE artifacts SET manifest = '{}' WHERE id = 'art-9'"));
    // Every device is held back until the change of every device is delivered.
    expect(o.feed.caughtUp(device.id)).toBe(false);
    expect(o.feed.caughtUp('a-device-never-written')).toBe(false);
    expect(o.seen).toEqual([]);
    listening.resume();
    expect(await delivered(o)).toEqual([null]);
  });
});

describe.each(engines.filter((e) => e.name === 'sqlite'))('device state feed on $name, its change log', () => {
  it('watches every devices column but liveness, so a column added later cannot be forgotten', async () => {
    const store = await openStore(await engines[0]!.fresh());
    try {
      const columns = (await (store as SqlStore).db.all("SELECT name FROM pragma_table_info('devices')")).map((r) => String(r.name));
      expect([...columns].sort()).toEqual([...DEVICE_COLUMNS_WATCHED, ...DEVICE_COLUMNS_NOT_WATCHED].sort());
    } finally {
      await store.close();
    }
  });

  it('watches every assignments and rollout_devices column a heartbeat reads, so a column added later cannot be forgotten', async () => {
    const store = await openStore(await engines[0]!.fresh());
    try {
      const columns = async (table: string) => (await (store as SqlStore).db.all(`SELECT name FROM pragma_table_info('${table}')`)).map((r) => String(r.name)).sort();
      expect(await columns('assignments')).toEqual([...ASSIGNMENT_COLUMNS_WATCHED, ...ASSIGNMENT_COLUMNS_NOT_WATCHED].sort());
      expect(await columns('rollout_devices')).toEqual([...ROLLOUT_DEVICE_COLUMNS_WATCHED, ...ROLLOUT_DEVICE_COLUMNS_NOT_WATCHED].sort());
    } finally {
      await store.close();
    }
  });

  it('delivers a change of every device when rows it never read were pruned', async () => {
    const o = await open(engines[0]!);
    const { device } = await o.store.ensureDevice({ spiffeId: 'spiffe://t/lab/d5', fleet: 'lab', name: 'd5', now: NOW });
    // Another process's feed pruned the change before this one read it.
    await engines[0]!.exec(o.location, 'DELETE FROM device_state_changes');
    await o.store.decommissionDevice(device.id, NOW);
    expect(await delivered(o)).toEqual([null]);
  });

  /**
   * `count` changes of devices dev-1..dev-<count>, as a wave's start writes them through
   * migration 6's triggers, but in one statement so thousands are quick. Before 2026-12-04
   * (late night) more than 1,000 at one look counted as a change of every device.
   */
  const writeChanges = (o: Opened, count: number) =>
    engines[0]!.exec(
      o.location,
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${count}) INSERT INTO device_state_changes (device_id) SELECT 'dev-' || i FROM n`,
    );

  it('delivers each device of a 2,500-device wave start, not a change of every device', async () => {
    const o = await open(engines[0]!);
    await writeChanges(o, 2500);
    const seen = await delivered(o);
    expect(seen).toHaveLength(2500);
    expect(seen).not.toContain(null);
    expect(new Set(seen)).toEqual(new Set(Array.from({ length: 2500 }, (_, i) => `dev-${i + 1}`)));
    // And it goes on from there, one change at a time.
    await o.store.ensureDevice({ spiffeId: 'spiffe://t/lab/d7', fleet: 'lab', name: 'd7', now: NOW });
    expect(await delivered(o)).toHaveLength(1);
  });

  it('delivers a change of every device when more than 20,000 changes wait at one look', async () => {
    const o = await open(engines[0]!);
    await writeChanges(o, 20001);
    const seen = await delivered(o);
    // The pages read before the bound was passed were delivered; then every device at once.
    expect(seen.at(-1)).toBeNull();
    expect(seen.filter((d) => d === null)).toHaveLength(1);
    expect(seen.length).toBeLessThanOrEqual(20_001);
    // Caught up past all of them: nothing is delivered twice.
    expect(await delivered(o)).toEqual([]);
  });

  it('prunes only rows it has read, and only once they are old', async () => {
    const o = await open(engines[0]!);
    await o.store.ensureDevice({ spiffeId: 'spiffe://t/lab/d6', fleet: 'lab', name: 'd6', now: NOW });
    const feed = o.feed as unknown as { prune(now?: number): Promise<number> };
    // Not read yet: kept, however old.
    expect(await feed.prune(Date.now() + 3_600_000)).toBe(0);
    await delivered(o);
    expect(await feed.prune()).toBe(0);
    expect(await feed.prune(Date.now() + 3_600_000)).toBe(1);
  });
});
