import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { Agent, AgentStateStore, MeshError, runPipeline, type TransitionEvent } from '../src/index.js';
import { createContext, PROGRESS_REPORT_INTERVAL_MS } from '../src/pipeline.js';
import { LocalTargetSource } from '../src/testing/index.js';
import { FakeFileArtifactPlugin, FakeProbePlugin } from './fixtures/fake-plugins.mjs';
import { makeAssignment, tempDir } from './helpers.js';

async function setup(pluginOptions: ConstructorParameters<typeof FakeFileArtifactPlugin>[0] = {}) {
  const dataDir = await tempDir('agent');
  const source = new LocalTargetSource(await tempDir('targets'));
  const state = await AgentStateStore.open(dataDir);
  const agent = new Agent({ dataDir, targetSource: source, state });
  const calls: string[] = [];
  agent.use(new FakeFileArtifactPlugin({ calls, ...pluginOptions }));
  agent.use(new FakeProbePlugin({ calls }));
  const events: TransitionEvent[] = [];
  agent.hooks.transition.tap('test', (e) => {
    events.push(e);
  });
  const live = path.join(dataDir, 'artifacts', 'fake', 'thing');
  return { dataDir, source, state, agent, calls, events, live };
}

const states = (events: TransitionEvent[]) => events.map((e) => e.state);

describe('pipeline', () => {
  it('runs download, verify, apply, probe and cleanup in that order and ends HEALTHY', async () => {
    const { source, agent, calls, events, live, state } = await setup();
    const target = await source.publish('thing/v1/thing.bin', Buffer.from('version one'));
    const result = await runPipeline(agent, makeAssignment(target), new AbortController().signal);
    expect(result).toBe('HEALTHY');
    expect(calls).toEqual(['download', 'verify', 'apply', 'probe:1', 'cleanup']);
    expect(states(events)).toEqual(['DOWNLOADING', 'DOWNLOADING', 'VERIFYING', 'APPLYING', 'HEALTHY']);
    expect(await readFile(live, 'utf8')).toBe('version one');
    expect(state.current.installed.thing?.sha256).toBe(target.sha256);
    const seqs = state.current.outbox.map((r) => r.sequence);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it('refuses a targetPath with a ".." segment before anything is fetched: FAILED with the path and the rule', async () => {
    const { source, agent, calls, events } = await setup();
    const target = await source.publish('thing/v1/thing.bin', Buffer.from('version one'));
    const result = await runPipeline(agent, makeAssignment({ ...target, targetPath: 'thing/../../../etc/passwd' }), new AbortController().signal);
    expect(result).toBe('FAILED');
    expect(events.map((e) => [e.state, e.reason])).toEqual([
      ['FAILED', 'MESH_ERR_SPEC_INVALID: targetPath "thing/../../../etc/passwd" must be "/"-separated segments, none of them empty, "." or ".." (found "..")'],
    ]);
    expect(calls).toEqual([]);
    expect(source.resolved).toEqual([]);
  });

  it('fails an assignment for an unknown artifact kind without calling any hook', async () => {
    const { source, agent, calls, events } = await setup();
    const target = await source.publish('x/1/x', Buffer.from('x'));
    const result = await runPipeline(agent, makeAssignment(target, { kind: 'firmware' }), new AbortController().signal);
    expect(result).toBe('FAILED');
    expect(calls).toEqual([]);
    expect(events.map((e) => [e.state, e.reason])).toEqual([['FAILED', 'MESH_ERR_PLUGIN_MISSING: no plugin for artifact kind "firmware"']]);
    expect(source.resolved).toEqual([]);
  });

  it('runs the validate hooks (artifact kind, then probe type) before anything is fetched; a refusal ends FAILED as the plugin said', async () => {
    const { source, agent, calls, events, live } = await setup();
    const seen: string[] = [];
    agent.hooks.validate.for('fake').tap('test', (ctx) => {
      seen.push(`validate:${JSON.stringify(ctx.spec)}`);
    });
    agent.hooks.validateProbe.for('fake-probe').tap('test', (ctx) => {
      seen.push(`validateProbe:${JSON.stringify(ctx.spec)}`);
      if ((ctx.spec as { healthyFromAttempt?: number }).healthyFromAttempt === 9) {
        throw new MeshError('MESH_ERR_ALLOWLIST_DENIED', 'probe nine is not on the allowlist (allowlist.execBinaries)');
      }
    });
    const target = await source.publish('thing/v1/thing.bin', Buffer.from('version one'));
    const refused = makeAssignment(target, { specJson: '{"label":"a"}' });
    refused.probe.specJson = '{"healthyFromAttempt":9}';
    expect(await runPipeline(agent, refused, new AbortController().signal)).toBe('FAILED');
    expect(seen).toEqual(['validate:{"label":"a"}', 'validateProbe:{"healthyFromAttempt":9}']);
    expect(events.map((e) => [e.state, e.reason])).toEqual([['FAILED', 'MESH_ERR_ALLOWLIST_DENIED: probe nine is not on the allowlist (allowlist.execBinaries)']]);
    expect(calls).toEqual([]);
    expect(source.resolved).toEqual([]);
    await expect(readFile(live)).rejects.toThrow(/ENOENT/);

    // Any other error from a validate tap is wrapped with the hook's name.
    agent.hooks.validate.for('fake').tap('broken', () => {
      throw new Error('cannot stat the destination');
    });
    expect(await runPipeline(agent, makeAssignment(target), new AbortController().signal)).toBe('FAILED');
    expect(events.at(-1)?.reason).toBe('MESH_ERR_PLUGIN_FAILED: validate hook for kind "fake" failed: cannot stat the destination');
    expect(source.resolved).toEqual([]);
  });

  it('fails an assignment for an unknown probe type before downloading', async () => {
    const { source, agent, events } = await setup();
    const target = await source.publish('x/1/x', Buffer.from('x'));
    const a = makeAssignment(target);
    a.probe.type = 'tcp';
    expect(await runPipeline(agent, a, new AbortController().signal)).toBe('FAILED');
    expect(events[0]?.reason).toContain('no plugin for probe type "tcp"');
    expect(source.resolved).toEqual([]);
  });

  it('reports the path and the rule when the spec or the probe contract is invalid', async () => {
    const { source, agent, events } = await setup();
    const target = await source.publish('x/1/x', Buffer.from('x'));
    const badSpec = makeAssignment(target, { specJson: '{"label":"far too long","extra":1}' });
    expect(await runPipeline(agent, badSpec, new AbortController().signal)).toBe('FAILED');
    expect(events.at(-1)?.reason).toContain('spec/label must NOT have more than 8 characters');
    expect(events.at(-1)?.reason).toContain('spec must NOT have additional property "extra"');

    const badProbe = makeAssignment(target);
    badProbe.probe.timeoutSeconds = 301;
    expect(await runPipeline(agent, badProbe, new AbortController().signal)).toBe('FAILED');
    expect(events.at(-1)?.reason).toBe('MESH_ERR_SPEC_INVALID: probe/timeoutSeconds must be <= 300');

    const badJson = makeAssignment(target, { specJson: '{not json' });
    expect(await runPipeline(agent, badJson, new AbortController().signal)).toBe('FAILED');
    expect(events.at(-1)?.reason).toContain('spec is not valid JSON');
    expect(source.resolved).toEqual([]);
  });

  it('fails without applying when the expected digest differs from the verified target', async () => {
    const { source, agent, calls, events, live } = await setup();
    const target = await source.publish('thing/v1/thing.bin', Buffer.from('version one'));
    const a = makeAssignment(target, { expectedSha256: 'a'.repeat(64) });
    expect(await runPipeline(agent, a, new AbortController().signal)).toBe('FAILED');
    expect(calls).not.toContain('apply');
    expect(events.at(-1)?.reason).toMatch(/^MESH_ERR_DIGEST_MISMATCH: assignment expects sha256 a{64}/);
    await expect(readFile(live)).rejects.toThrow(/ENOENT/);
  });

  it('fails before downloading when the assignment spec differs from the spec signed into TUF', async () => {
    const { source, agent, calls, events } = await setup();
    const target = await source.publish('thing/v1/thing.bin', Buffer.from('v1'), { kind: 'fake', spec: { label: 'signed' } });
    const forged = makeAssignment(target, { specJson: '{"label":"forged"}' });
    expect(await runPipeline(agent, forged, new AbortController().signal)).toBe('FAILED');
    expect(events.at(-1)?.reason).toBe('MESH_ERR_SPEC_INVALID: assignment spec differs from the spec signed into the TUF target');
    expect(calls).toEqual(['cleanup']);
    const honest = makeAssignment(target, { specJson: '{ "label" : "signed" }' });
    expect(await runPipeline(agent, honest, new AbortController().signal)).toBe('HEALTHY');
    const otherKind = await source.publish('thing/v2/thing.bin', Buffer.from('v2'), { kind: 'model', spec: {} });
    expect(await runPipeline(agent, makeAssignment(otherKind), new AbortController().signal)).toBe('FAILED');
    expect(events.at(-1)?.reason).toContain('differs from the signed kind "model"');
  });

  it('fails without applying when the bytes were altered after the metadata was signed', async () => {
    const { source, agent, calls, events, live } = await setup();
    const v1 = await source.publish('thing/v1/thing.bin', Buffer.from('version one'));
    expect(await runPipeline(agent, makeAssignment(v1), new AbortController().signal)).toBe('HEALTHY');
    const v2 = await source.publish('thing/v2/thing.bin', Buffer.from('version two'));
    await writeFile(path.join(source.dir, 'thing/v2/thing.bin'), 'version 666');
    calls.length = 0;
    expect(await runPipeline(agent, makeAssignment(v2), new AbortController().signal)).toBe('FAILED');
    expect(calls).toEqual(['cleanup']);
    expect(events.at(-1)?.reason).toContain('do not match the verified target');
    expect(await readFile(live, 'utf8')).toBe('version one');
  });

  it('rolls back when the probe fails on every attempt and names each attempt in the reason', async () => {
    const { source, agent, calls, events, live, state } = await setup();
    const v1 = await source.publish('thing/v1/thing.bin', Buffer.from('version one'));
    expect(await runPipeline(agent, makeAssignment(v1), new AbortController().signal)).toBe('HEALTHY');
    const v2 = await source.publish('thing/v2/thing.bin', Buffer.from('version two'));
    const a = makeAssignment(v2, {
      probe: { type: 'fake-probe', specJson: '{}', timeoutSeconds: 1, attempts: 2, initialDelaySeconds: 0 },
    });
    calls.length = 0;
    expect(await runPipeline(agent, a, new AbortController().signal)).toBe('ROLLED_BACK');
    expect(calls).toEqual(['download', 'verify', 'apply', 'probe:1', 'probe:2', 'rollback', 'cleanup']);
    const reason = events.at(-1)?.reason ?? '';
    expect(reason).toContain('attempt 1/2: unhealthy: not yet');
    expect(reason).toContain('attempt 2/2: unhealthy: not yet');
    expect(await readFile(live, 'utf8')).toBe('version one');
    expect(state.current.installed.thing?.version).toBe(a.version.replace(/\d+$/, (n) => String(Number(n) - 1)));
  });

  it('is healthy when the probe passes on a later attempt', async () => {
    const { source, agent, calls } = await setup();
    const v1 = await source.publish('thing/v1/thing.bin', Buffer.from('v1'));
    const a = makeAssignment(v1, {
      probe: { type: 'fake-probe', specJson: '{"healthyFromAttempt":2}', timeoutSeconds: 1, attempts: 3, initialDelaySeconds: 0 },
    });
    expect(await runPipeline(agent, a, new AbortController().signal)).toBe('HEALTHY');
    expect(calls.filter((c) => c.startsWith('probe'))).toEqual(['probe:1', 'probe:2']);
  });

  it('rolls back when the probe times out on every attempt, aborting each attempt', async () => {
    const { source, agent, calls, events } = await setup();
    const v1 = await source.publish('thing/v1/thing.bin', Buffer.from('v1'));
    const a = makeAssignment(v1, {
      probe: { type: 'fake-probe', specJson: '{"hang":true}', timeoutSeconds: 1, attempts: 2, initialDelaySeconds: 0 },
    });
    expect(await runPipeline(agent, a, new AbortController().signal)).toBe('ROLLED_BACK');
    expect(calls).toContain('probe-aborted:1');
    expect(calls).toContain('probe-aborted:2');
    expect(events.at(-1)?.reason).toContain('attempt 2/2: unhealthy: timed out after 1s');
  });

  it('fails and keeps nothing new when apply throws, wrapping the error with the hook name', async () => {
    const { source, agent, calls, events, live, state } = await setup({ failApply: 'disk on fire' });
    const v1 = await source.publish('thing/v1/thing.bin', Buffer.from('new'));
    expect(await runPipeline(agent, makeAssignment(v1), new AbortController().signal)).toBe('FAILED');
    expect(events.at(-1)?.reason).toBe('MESH_ERR_PLUGIN_FAILED: apply hook for kind "fake" failed: disk on fire; nothing changed');
    expect(calls).toEqual(['download', 'verify', 'apply', 'rollback', 'cleanup']);
    await expect(readFile(live)).rejects.toThrow(/ENOENT/);
    expect(state.current.installed).toEqual({});
    expect(state.current.inflight).toEqual({});
  });
  it('reports download progress at most once per PROGRESS_REPORT_INTERVAL_MS: the first, then the next due, and always the final one', async () => {
    const { source, agent, events, state } = await setup();
    const target = await source.publish('thing/v1/thing.bin', Buffer.from('version one'));
    const assignment = makeAssignment(target);
    let now = 1_000_000;
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => now);
    try {
      const ctx = createContext(agent, assignment, {}, undefined, {}, new AbortController().signal);
      // One call a second for 12 s, as the download loop makes them, then the final one.
      for (let second = 0; second < 12; second++) {
        ctx.reportProgress((second + 1) * 10, 1000);
        now += 1000;
      }
      ctx.reportProgress(1000, 1000);
    } finally {
      clock.mockRestore();
    }
    await state.update(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const progress = events.filter((e) => e.state === 'DOWNLOADING').map((e) => e.bytesDone);
    expect(PROGRESS_REPORT_INTERVAL_MS).toBe(5000);
    expect(progress).toEqual([10, 60, 110, 1000]);
    // Unsent progress reports of one assignment still supersede each other in the outbox.
    expect(state.current.outbox.filter((r) => r.state === 'DOWNLOADING').map((r) => r.bytesDone)).toEqual([1000]);
  });
});
