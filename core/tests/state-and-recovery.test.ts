import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Agent, AgentStateStore, recoverInterrupted, runPipeline } from '../src/index.js';
import { LocalTargetSource } from '../src/testing/index.js';
import { FakeFileArtifactPlugin, FakeProbePlugin } from './fixtures/fake-plugins.mjs';
import { makeAssignment, tempDir } from './helpers.js';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('./fixtures/run-pipeline-child.mjs', import.meta.url));

describe('durable state', () => {
  it('keeps the outbox and the sequence counter across a restart, in order', async () => {
    const dataDir = await tempDir('state');
    const store = await AgentStateStore.open(dataDir);
    for (const state of ['DOWNLOADING', 'VERIFYING', 'APPLYING'] as const) {
      await store.update((d) => AgentStateStore.enqueue(d, { assignmentId: 'a1', state, reason: '', bytesDone: 0, bytesTotal: 0, deviceTime: '' }));
    }
    const reopened = await AgentStateStore.open(dataDir);
    expect(reopened.current.outbox.map((r) => [r.sequence, r.state])).toEqual([
      [1, 'DOWNLOADING'],
      [2, 'VERIFYING'],
      [3, 'APPLYING'],
    ]);
    await reopened.update((d) => AgentStateStore.enqueue(d, { assignmentId: 'a1', state: 'HEALTHY', reason: '', bytesDone: 0, bytesTotal: 0, deviceTime: '' }));
    expect(reopened.current.outbox.at(-1)?.sequence).toBe(4);
  });

  it('keeps only the newest unsent download progress report', async () => {
    const store = await AgentStateStore.open(await tempDir('state'));
    await store.update((d) => {
      for (const bytesDone of [0, 10, 20, 30]) {
        AgentStateStore.enqueue(d, { assignmentId: 'a1', state: 'DOWNLOADING', reason: '', bytesDone, bytesTotal: 30, deviceTime: '' });
      }
    });
    expect(store.current.outbox.map((r) => [r.sequence, r.bytesDone])).toEqual([
      [1, 0],
      [4, 30],
    ]);
  });

  it('refuses to start on a state file that is not its own format, naming the file', async () => {
    const dataDir = await tempDir('state');
    const store = await AgentStateStore.open(dataDir);
    await store.update(() => undefined);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(store.file, '{"formatVersion": 9}');
    await expect(AgentStateStore.open(dataDir)).rejects.toThrow(/MESH_ERR|cannot read .*agent-state\.json/);
  });
});

describe('crash recovery', () => {
  for (const crashAt of ['before-rename', 'after-rename'] as const) {
    it(`leaves the old version live when the agent is killed ${crashAt.replace('-', ' the ')} during apply`, async () => {
      const dataDir = await tempDir('crash');
      const targetsDir = await tempDir('targets');
      const source = new LocalTargetSource(targetsDir);
      const v1 = await source.publish('thing/v1/thing.bin', Buffer.from('version one'));
      const v2 = await source.publish('thing/v2/thing.bin', Buffer.from('version two'));
      const a1 = makeAssignment(v1);
      const a2 = makeAssignment(v2);
      const ok = await run(process.execPath, [CHILD, dataDir, targetsDir, JSON.stringify(a1), 'none']);
      expect(ok.stdout.trim()).toBe('HEALTHY');

      const killed = await run(process.execPath, [CHILD, dataDir, targetsDir, JSON.stringify(a2), crashAt]).then(
        () => undefined,
        (err: { signal?: string }) => err,
      );
      expect(killed?.signal).toBe('SIGKILL');
      const live = path.join(dataDir, 'artifacts', 'fake', 'thing');
      expect(await readFile(live, 'utf8')).toBe(crashAt === 'before-rename' ? 'version one' : 'version two');

      // The restarted agent.
      const state = await AgentStateStore.open(dataDir);
      expect(state.current.inflight.thing?.phase).toBe('applying');
      const agent = new Agent({ dataDir, targetSource: source, state });
      agent.use(new FakeFileArtifactPlugin()).use(new FakeProbePlugin());
      await recoverInterrupted(agent);
      expect(await readFile(live, 'utf8')).toBe('version one');
      expect(state.current.inflight).toEqual({});
      expect(state.current.installed.thing?.version).toBe(a1.version);
      const last = state.current.outbox.at(-1);
      expect(last?.assignmentId).toBe(a2.assignmentId);
      expect(last?.state).toBe('ROLLED_BACK');
      expect(last?.reason).toContain('agent restarted during applying');
      expect(state.current.completed[a2.assignmentId]?.state).toBe('ROLLED_BACK');

      // Running recovery again (a crash during recovery) changes nothing.
      await recoverInterrupted(agent);
      expect(await readFile(live, 'utf8')).toBe('version one');
      // And the assignment never runs again.
      expect(state.current.completed[a2.assignmentId]).toBeDefined();
    });
  }

  it('resumes an assignment interrupted while downloading instead of failing it', async () => {
    const dataDir = await tempDir('resume');
    const source = new LocalTargetSource(await tempDir('targets'));
    const v1 = await source.publish('thing/v1/thing.bin', Buffer.from('v1'));
    const a1 = makeAssignment(v1);
    const state = await AgentStateStore.open(dataDir);
    await state.update((d) => {
      d.inflight.thing = { assignment: a1, phase: 'downloading', pluginState: {}, startedAt: new Date().toISOString() };
    });
    const agent = new Agent({ dataDir, targetSource: source, state });
    agent.use(new FakeFileArtifactPlugin()).use(new FakeProbePlugin());
    await recoverInterrupted(agent);
    expect(state.current.inflight.thing?.phase).toBe('downloading');
    expect(await runPipeline(agent, a1, new AbortController().signal)).toBe('HEALTHY');
  });
});
