// Bounds that keep an agent responsive when a control plane floods it: the reconciler runs a
// few pipelines at once and takes a bounded number of names from one reply; the state store
// group-commits concurrent updates (one durable write for many), never resolving an update
// before the write that carries it is on disk; and leftovers of interrupted state writes are
// removed when the store opens.
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Agent, AgentStateStore, type Assignment } from '../src/index.js';
import { Reconciler } from '../src/reconciler.js';
import { LocalTargetSource } from '../src/testing/index.js';
import { FakeFileArtifactPlugin, FakeProbePlugin } from './fixtures/fake-plugins.mjs';
import { makeAssignment, tempDir } from './helpers.js';

const stateFile = (dataDir: string) => path.join(dataDir, 'state', 'agent-state.json');

describe('AgentStateStore', () => {
  it('removes the temp files of interrupted state writes when it opens, and nothing else', async () => {
    const dataDir = await tempDir('state');
    const dir = path.join(dataDir, 'state');
    await mkdir(dir, { recursive: true });
    const first = await AgentStateStore.open(dataDir);
    await first.update((d) => {
      d.nextSequence = 7;
    });
    // What a SIGKILL between "temp written" and "renamed" leaves (writeFileAtomic's naming).
    await writeFile(path.join(dir, '.agent-state.json.tmp-0123456789ab'), '{"torn":');
    await writeFile(path.join(dir, '.agent-state.json.tmp-ffffffffffff'), '');
    // Not ours: kept.
    await writeFile(path.join(dir, '.other.json.tmp-0123456789ab'), 'x');
    await writeFile(path.join(dir, 'agent-state.json.tmp-0123456789ab'), 'x');
    await writeFile(path.join(dir, '.agent-state.json.tmp-notes'), 'x');
    const store = await AgentStateStore.open(dataDir);
    expect([...store.removedTempFiles].sort()).toEqual(['.agent-state.json.tmp-0123456789ab', '.agent-state.json.tmp-ffffffffffff']);
    expect((await readdir(dir)).sort()).toEqual(['.agent-state.json.tmp-notes', '.other.json.tmp-0123456789ab', 'agent-state.json', 'agent-state.json.tmp-0123456789ab']);
    expect(store.current.nextSequence).toBe(7);
  });

  it('group-commits concurrent updates: all applied in call order, far fewer writes, each resolved only once durable', async () => {
    const dataDir = await tempDir('state');
    const store = await AgentStateStore.open(dataDir);
    const seenOnDisk: boolean[] = [];
    const updates = Array.from({ length: 200 }, (_, i) =>
      store
        .update((d) => {
          AgentStateStore.enqueue(d, { assignmentId: `a-${i}`, state: 'DOWNLOADING', reason: '', bytesDone: 0, bytesTotal: 0, deviceTime: '' });
          return i;
        })
        .then(async (result) => {
          // Resolved means durable: the file already holds this report.
          const disk = JSON.parse(await readFile(stateFile(dataDir), 'utf8'));
          seenOnDisk.push(disk.outbox.some((r: { assignmentId: string }) => r.assignmentId === `a-${i}`));
          return result;
        }),
    );
    expect(await Promise.all(updates)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(seenOnDisk.every(Boolean)).toBe(true);
    expect(store.current.outbox.map((r) => r.assignmentId)).toEqual(Array.from({ length: 200 }, (_, i) => `a-${i}`));
    expect(store.current.outbox.map((r) => r.sequence)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    // The first update writes alone; everything that queued behind it shares few writes.
    expect(store.writes).toBeLessThanOrEqual(5);
    const disk = JSON.parse(await readFile(stateFile(dataDir), 'utf8'));
    expect(disk.outbox).toHaveLength(200);
  });

  it('rejects only the update whose mutation throws; the others of its batch are written', async () => {
    const dataDir = await tempDir('state');
    const store = await AgentStateStore.open(dataDir);
    const a = store.update((d) => {
      d.installed.a = { name: 'a' } as never;
    });
    const bad = store.update((d) => {
      d.installed.half = { name: 'half' } as never;
      throw new Error('mutation failed');
    });
    const c = store.update((d) => {
      d.installed.c = { name: 'c' } as never;
    });
    await expect(bad).rejects.toThrow('mutation failed');
    await Promise.all([a, c]);
    expect(Object.keys(store.current.installed).sort()).toEqual(['a', 'c']);
    const disk = JSON.parse(await readFile(stateFile(dataDir), 'utf8'));
    expect(Object.keys(disk.installed).sort()).toEqual(['a', 'c']);
  });
});

describe('Reconciler bounds', () => {
  async function setup(options: { maxConcurrent?: number; maxAssignments?: number }) {
    const dataDir = await tempDir('agent');
    const source = new LocalTargetSource(await tempDir('targets'));
    const lines: Array<{ level: number; msg: string }> = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _enc, cb) {
          lines.push(JSON.parse(String(chunk)));
          cb();
        },
      }),
    );
    const agent = new Agent({ dataDir, targetSource: source, state: await AgentStateStore.open(dataDir), logger });
    agent.use(new FakeFileArtifactPlugin()).use(new FakeProbePlugin());
    // A gate in the download stage: counts the pipelines inside it and holds them.
    const gate = { inside: 0, max: 0, started: [] as string[], release: () => {} };
    let open!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    gate.release = open;
    agent.hooks.download.for('fake').tapPromise('gate', async (ctx) => {
      gate.started.push(ctx.assignment.name);
      gate.inside += 1;
      gate.max = Math.max(gate.max, gate.inside);
      await opened;
      gate.inside -= 1;
    });
    const reconciler = new Reconciler(agent, options);
    const assignments = async (count: number): Promise<Assignment[]> => {
      const out: Assignment[] = [];
      for (let i = 0; i < count; i++) {
        const name = `thing-${String(i).padStart(2, '0')}`;
        out.push(makeAssignment(await source.publish(`${name}/v1/${name}`, Buffer.from(`bytes of ${name}`)), { name }));
      }
      return out;
    };
    return { agent, reconciler, gate, lines, assignments };
  }

  it('runs at most maxConcurrent pipelines at once and starts the rest in the order of the reply', async () => {
    const { agent, reconciler, gate, assignments } = await setup({ maxConcurrent: 3 });
    const desired = await assignments(10);
    // The reply arrives again while the first ones are held: nothing starts twice.
    await reconciler.reconcile(desired);
    await reconciler.reconcile(desired);
    await new Promise((r) => setTimeout(r, 100));
    expect(gate.inside).toBe(3);
    expect(reconciler.load).toEqual({ running: 3, queued: 7 });
    gate.release();
    await reconciler.idle();
    expect(gate.max).toBe(3);
    // The first three started together; the others only as places freed up.
    expect(new Set(gate.started.slice(0, 3))).toEqual(new Set(desired.slice(0, 3).map((a) => a.name)));
    expect([...gate.started].sort()).toEqual(desired.map((a) => a.name));
    for (const a of desired) expect(agent.state.current.completed[a.assignmentId]?.state).toBe('HEALTHY');
    expect(reconciler.busy).toBe(false);
  });

  it('takes at most maxAssignments names from one reply and logs an error once for it', async () => {
    const { agent, reconciler, gate, lines, assignments } = await setup({ maxConcurrent: 2, maxAssignments: 4 });
    const desired = await assignments(9);
    gate.release();
    await reconciler.reconcile(desired);
    await reconciler.idle();
    await reconciler.reconcile(desired);
    await reconciler.idle();
    expect(Object.keys(agent.state.current.completed).sort()).toEqual(
      desired
        .slice(0, 4)
        .map((a) => a.assignmentId)
        .sort(),
    );
    expect([...gate.started].sort()).toEqual(desired.slice(0, 4).map((a) => a.name));
    const errors = lines.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toContain('only the first 4 are considered');
  });

  it('with one at a time, starts them exactly in the order of the reply', async () => {
    const { reconciler, gate, assignments } = await setup({ maxConcurrent: 1 });
    const desired = await assignments(6);
    gate.release();
    await reconciler.reconcile([...desired].reverse());
    await reconciler.idle();
    expect(gate.started).toEqual([...desired].reverse().map((a) => a.name));
  });

  it('drops queued work on abort', async () => {
    const { reconciler, gate, assignments } = await setup({ maxConcurrent: 1 });
    await reconciler.reconcile(await assignments(3));
    await new Promise((r) => setTimeout(r, 50));
    reconciler.abort('stopping');
    gate.release();
    await reconciler.idle();
    expect(gate.started).toHaveLength(1);
    expect(reconciler.busy).toBe(false);
  });
});
