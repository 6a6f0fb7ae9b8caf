// PostgreSQL writes without one global lock (store/row-locks.ts), tried as replicas run them:
// two store instances on one database, each with its own pool and its own report batcher,
// write status reports of one rollout's devices at once and step the rollout after each batch
// (as the device service does). The halt and abort rules must hold exactly as they did when
// every write took the global lock, the audit chain must stay one chain, and no transaction
// may fail (a deadlock is an error PostgreSQL raises). The audit chain is in commit order
// (its lock is taken just before COMMIT), which is what the exactness checks read: what a
// halt or abort counted must be exactly what committed before it.
//
// Also: migration 9 makes the database order hand-typed SQL (no store, no server lock)
// against a halt, in migration 7's PENDING trigger.
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyAudit } from '../src/audit/trail.js';
import { driveRollouts, startWave, type EngineContext } from '../src/rollouts/engine.js';
import { abortRollout, newRolloutRecord } from '../src/rollouts/service.js';
import { planWaves } from '../src/rollouts/wave-plan.js';
import type { Strategy } from '../src/rollouts/strategy.js';
import { openStore, type AuditEventRecord, type NewStatusReport, type RolloutRecord, type Store } from '../src/store/index.js';
import { DEVICE_STATE_CHANNEL } from '../src/store/migration-6.js';
import { WriteBatcher } from '../src/store/write-batcher.js';
import { freshPostgresDatabase, IN_CI, postgresUnavailable } from './engines.js';
import { insertModelArtifact, labModelRollout, registerLabDevices } from './helpers/rollout-seed.mjs';

const unavailable = await postgresUnavailable();
if (unavailable && !IN_CI) console.warn(`skipping the PostgreSQL row-lock tests: ${unavailable}`);
const describePg = unavailable && !IN_CI ? describe.skip : describe;

const opened: Store[] = [];
afterAll(async () => {
  for (const s of opened.splice(0)) await s.close();
});

async function replicaStores(url: string): Promise<[Store, Store]> {
  const a = await openStore(url);
  const b = await openStore(url);
  opened.push(a, b);
  return [a, b];
}

/** A logger that keeps every error (driveRollouts logs a failed step instead of throwing). */
function recordingLogger(errors: unknown[]): EngineContext['logger'] {
  const logger = {
    info: () => undefined,
    warn: () => undefined,
    debug: () => undefined,
    trace: () => undefined,
    fatal: (o: unknown) => errors.push(o),
    error: (o: unknown) => errors.push(o),
    child: () => logger,
  };
  return logger as unknown as EngineContext['logger'];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `n` registered devices, an artifact and a running rollout whose first wave has started. */
async function rolloutFixture(store: Store, n: number, strategy: Strategy): Promise<{ rollout: RolloutRecord; devices: string[] }> {
  const now = new Date().toISOString();
  const devices = await registerLabDevices(store, n, 'test.local', now);
  const artifactId = await insertModelArtifact(store, now);
  const rollout = newRolloutRecord(labModelRollout(artifactId, strategy, 'operator:test'), now);
  await store.withWriteLock(async () => {
    await store.rollouts.insert(rollout, planWaves(rollout.id, devices, strategy));
    await startWave(store, rollout, 0, 'operator:test', now);
  });
  return { rollout, devices };
}

const REPORTED = 'device.status_reported';

/** A replica's report path: group commit of reports and their audit events (as the device service), then a step of the rollout. */
function replica(store: Store, rolloutId: string, errors: unknown[]) {
  const ctx: EngineContext = { store, logger: recordingLogger(errors) };
  const writes = new WriteBatcher<NewStatusReport, boolean>(store, async (items) => {
    const stored = await store.recordStatusReports(items);
    await store.appendAuditEvents(
      items.flatMap((r, i) =>
        stored[i] ? [{ actor: `device:${r.deviceId}`, action: REPORTED, subject: `assignment:${r.assignmentId}`, details: { state: r.state, device: r.deviceId } }] : [],
      ),
    );
    return stored;
  });
  return {
    ctx,
    async report(deviceId: string, assignmentId: string, sequence: number, state: NewStatusReport['state'], step = true): Promise<void> {
      const at = new Date().toISOString();
      try {
        await writes.write({ deviceId, assignmentId, sequence, state, reason: '', bytesDone: 0, bytesTotal: 0, deviceTime: at, receivedAt: at });
      } catch (err) {
        errors.push(err);
      }
      if (step) await driveRollouts(ctx, { rolloutId });
    },
  };
}

async function chain(store: Store): Promise<AuditEventRecord[]> {
  return store.listAudit({ limit: 1_000_000 });
}

describePg('PostgreSQL writes of two replicas without the global lock', () => {
  it('halt rule: reports of one rollout from two replicas at once halt it exactly once, counting exactly the failures committed before the halt, and no device of a later wave is assigned', async () => {
    const url = await freshPostgresDatabase();
    const [a, b] = await replicaStores(url);
    // 80 devices: waves of 16, 40 and 80 (cumulative). Halts once more than 4 of 80 failed.
    const strategy: Strategy = {
      waves: [
        { percent: 20, approval: 'auto' },
        { percent: 50, approval: 'auto' },
        { percent: 100, approval: 'auto' },
      ],
      max_failure_rate: 0.05,
    };
    const { rollout, devices } = await rolloutFixture(a, 80, strategy);
    const plan = new Map((await a.rollouts.listDevices(rollout.id)).map((d) => [d.deviceId, d]));
    // Wave 0 all healthy (its end starts wave 1 on whichever replica steps first); in wave 1
    // every third device fails (8 of 24 > 4): the rollout halts during wave 1.
    const outcome = (id: string): 'HEALTHY' | 'FAILED' => (plan.get(id)!.wave === 1 && plan.get(id)!.position % 3 === 0 ? 'FAILED' : 'HEALTHY');
    const errors: unknown[] = [];
    const replicas = [replica(a, rollout.id, errors), replica(b, rollout.id, errors)];
    const reported = new Set<string>();
    const deadline = Date.now() + 90_000;
    for (;;) {
      expect(Date.now()).toBeLessThan(deadline);
      const view = await a.rollouts.listDevices(rollout.id);
      const ready = view.filter((d) => d.assignmentId !== null && !reported.has(d.deviceId));
      if (ready.length === 0) {
        if ((await a.rollouts.get(rollout.id))!.status !== 'running') break;
        await sleep(20);
        continue;
      }
      // Every device of the started waves at once, alternately on the two replicas; each report followed by a step.
      await Promise.all(
        ready.map(async (d, i) => {
          reported.add(d.deviceId);
          const r = replicas[i % 2]!;
          await r.report(d.deviceId, d.assignmentId!, 1, 'DOWNLOADING');
          await r.report(d.deviceId, d.assignmentId!, 2, outcome(d.deviceId));
        }),
      );
    }
    expect(errors).toEqual([]);
    const final = (await a.rollouts.get(rollout.id))!;
    expect(final.status).toBe('halted');
    expect(final.currentWave).toBe(1);
    const events = await chain(a);
    const halted = events.filter((e) => e.action === 'rollout.halted');
    expect(halted).toHaveLength(1);
    expect(events.filter((e) => e.action === 'rollout.wave_started').map((e) => e.details.wave)).toEqual([0, 1]);
    // Exactly what had committed before the halt: the failures reported before it in the chain.
    const failedBefore = events.filter((e) => e.action === REPORTED && e.details.state === 'FAILED' && e.seq < halted[0]!.seq).length;
    expect(halted[0]!.details.failures).toBe(failedBefore);
    expect(final.halt!.failures).toBe(failedBefore);
    expect(failedBefore).toBeGreaterThan(4);
    // No device of wave 2 was assigned anything.
    const wave2 = (await a.rollouts.listDevices(rollout.id)).filter((d) => d.wave === 2);
    expect(wave2.length).toBe(40);
    expect(wave2.filter((d) => d.assignmentId !== null)).toEqual([]);
    // Counts exact: every report stored once.
    const progress = await b.rollouts.progress(rollout.id, final.currentWave);
    const waves01 = devices.filter((id) => plan.get(id)!.wave <= 1);
    expect(progress.failed).toBe(waves01.filter((id) => outcome(id) === 'FAILED').length);
    expect(progress.healthy).toBe(waves01.filter((id) => outcome(id) === 'HEALTHY').length);
    expect(events.filter((e) => e.action === REPORTED)).toHaveLength(waves01.length * 2);
    expect(await verifyAudit({ store: b })).toMatchObject({ verified: true, count: events.length });
  }, 120_000);

  it('abort rule: an abort on one replica while the other stores reports withdraws exactly the assignments no report had left PENDING before it committed', async () => {
    const url = await freshPostgresDatabase();
    const [a, b] = await replicaStores(url);
    const { rollout } = await rolloutFixture(a, 150, { waves: [{ percent: 100, approval: 'auto' }], max_failure_rate: 0.5 });
    const view = await a.rollouts.listDevices(rollout.id);
    const errors: unknown[] = [];
    // Reports on replica b only (no steps: the rollout is aborted, not driven); the abort on a.
    const reporter = replica(b, rollout.id, errors);
    const ctxA: EngineContext = { store: a, logger: recordingLogger(errors) };
    const order = [...view].sort(() => Math.random() - 0.5);
    let sent = 0;
    const reports = Promise.all(
      order.map(async (d) => {
        // Spread over the abort: a few at a time.
        await sleep(Math.floor(sent++ / 3) * 8);
        await reporter.report(d.deviceId, d.assignmentId!, 1, 'DOWNLOADING', false);
      }),
    );
    await sleep(40);
    await abortRollout(ctxA, rollout.id, { policy: 'keep' }, 'operator:test');
    await reports;
    expect(errors).toEqual([]);
    const events = await chain(a);
    const aborted = events.filter((e) => e.action === 'rollout.aborted');
    expect(aborted).toHaveLength(1);
    const before = new Set(events.filter((e) => e.action === REPORTED && e.seq < aborted[0]!.seq).map((e) => e.subject.slice('assignment:'.length)));
    // The race was run: some reports landed before the abort and some after.
    expect(before.size).toBeGreaterThan(0);
    expect(before.size).toBeLessThan(150);
    expect(aborted[0]!.details.withdrawnAssignments).toBe(150 - before.size);
    for (const d of await a.rollouts.listDevices(rollout.id)) {
      // Withdrawn exactly when no report had moved it out of PENDING before the abort committed.
      expect({ id: d.assignmentId, active: d.assignment!.active }).toEqual({ id: d.assignmentId, active: before.has(d.assignmentId!) });
    }
    expect(await verifyAudit({ store: b })).toMatchObject({ verified: true });
  }, 120_000);

  it('audit chain: appends from two replicas at once, in row-locked, globally locked and standalone writes, make one verifiable chain', async () => {
    const url = await freshPostgresDatabase();
    const [a, b] = await replicaStores(url);
    const { devices } = await rolloutFixture(a, 8, { waves: [{ percent: 100, approval: 'auto' }], max_failure_rate: 0 });
    const before = (await chain(a)).length;
    const event = (i: number, kind: string) => ({ actor: 'test', action: `test.${kind}`, subject: `n:${i}` });
    const work: Array<Promise<unknown>> = [];
    for (let i = 0; i < 60; i++) {
      const s = i % 2 === 0 ? a : b;
      const device = devices[i % devices.length]!;
      // Spread over about a second, so the kinds of writes overlap all along.
      const later = <T>(fn: () => Promise<T>) => sleep(Math.random() * 1000).then(fn);
      work.push(later(() => s.appendAudit(event(i, 'standalone'))));
      work.push(
        later(() =>
          s.withRowLocks(async () => {
            await s.touchLastSeen([{ deviceId: device, at: new Date().toISOString() }]);
            // Holding the device's row a while, as a report batch's statements do.
            await sleep(5);
            await s.appendAuditEvents([event(i, 'rows-1'), event(i, 'rows-2')]);
          }),
        ),
      );
      work.push(
        later(() =>
          s.withWriteLock(async () => {
            await s.appendAudit(event(i, 'global'));
            await sleep(5);
            // A row written after the append, one the row-locked writes above lock before theirs:
            // the chain's lock is taken at commit, after this one, so the two cannot wait for
            // each other in a cycle.
            await s.touchLastSeen([{ deviceId: device, at: new Date().toISOString() }]);
          }),
        ),
      );
    }
    const results = await Promise.allSettled(work);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    const events = await chain(b);
    expect(events.length - before).toBe(60 * 4);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(await verifyAudit({ store: a })).toMatchObject({ verified: true, count: events.length });
  }, 120_000);

  it('no deadlock: two replicas writing reports and liveness for the same devices in opposite orders all commit', async () => {
    const url = await freshPostgresDatabase();
    const [a, b] = await replicaStores(url);
    const { rollout, devices } = await rolloutFixture(a, 60, { waves: [{ percent: 100, approval: 'auto' }], max_failure_rate: 0.9 });
    const assignment = new Map((await a.rollouts.listDevices(rollout.id)).map((d) => [d.deviceId, d.assignmentId!]));
    const forward = [...devices];
    const backward = [...devices].reverse();
    const work: Array<Promise<unknown>> = [];
    for (let round = 0; round < 12; round++) {
      const order = round % 2 === 0 ? forward : backward;
      const s = round % 2 === 0 ? a : b;
      const at = new Date().toISOString();
      // Each round, in its own order, one report per device (sequence = round + 1) in one transaction.
      work.push(
        s.withRowLocks(() =>
          s.recordStatusReports(
            order.map((id) => ({
              deviceId: id,
              assignmentId: assignment.get(id)!,
              sequence: round + 1,
              state: 'DOWNLOADING',
              reason: '',
              bytesDone: round,
              bytesTotal: 0,
              deviceTime: at,
              receivedAt: at,
            })),
          ),
        ),
      );
      work.push((round % 2 === 0 ? b : a).touchLastSeen(order.map((id) => ({ deviceId: id, at }))));
    }
    const results = await Promise.allSettled(work);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
  }, 120_000);

  it('migration 9: SQL typed by hand in a separate client is ordered against a halt by the database (the PENDING trigger share-locks the rollout)', async () => {
    const url = await freshPostgresDatabase();
    const [a] = await replicaStores(url);
    const { rollout } = await rolloutFixture(a, 2, { waves: [{ percent: 100, approval: 'auto' }], max_failure_rate: 0 });
    const [d0, d1] = await a.rollouts.listDevices(rollout.id);
    const client = async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    };
    const operator = await client();
    const handTyped = await client();
    const listener = await client();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.payload ?? ''));
    await listener.query(`LISTEN ${DEVICE_STATE_CHANNEL}`);
    const settled = (p: Promise<unknown>) => Promise.race([p.then(() => true), sleep(400).then(() => false)]);
    try {
      // 1. A halt in flight, then a hand-typed update of a PENDING assignment: the update waits
      //    for the halt and then sees it, so the device's change is announced (without the
      //    lock it read "running", announced nothing, and a heartbeat cache kept "not served").
      await operator.query('BEGIN');
      await operator.query(`UPDATE rollouts SET status = 'halted' WHERE id = $1`, [rollout.id]);
      const update = handTyped.query(`UPDATE assignments SET state = 'DOWNLOADING' WHERE id = $1`, [d0!.assignmentId]);
      expect(await settled(update)).toBe(false);
      await operator.query('COMMIT');
      await update;
      await sleep(200);
      expect(heard).toContain(d0!.deviceId);

      // 2. The other way round: a hand-typed transaction has moved an assignment out of PENDING
      //    while the rollout was running; a halt waits for it to end, so the halt's
      //    change-of-every-device notice comes after that commit, never before.
      await operator.query(`UPDATE rollouts SET status = 'running' WHERE id = $1`, [rollout.id]);
      await handTyped.query('BEGIN');
      await handTyped.query(`UPDATE assignments SET state = 'DOWNLOADING' WHERE id = $1`, [d1!.assignmentId]);
      const halt = operator.query(`UPDATE rollouts SET status = 'halted' WHERE id = $1`, [rollout.id]);
      expect(await settled(halt)).toBe(false);
      await handTyped.query('COMMIT');
      await halt;
      expect((await a.rollouts.get(rollout.id))!.status).toBe('halted');
    } finally {
      await Promise.all([operator.end(), handTyped.end(), listener.end()]);
    }
  }, 60_000);
});
