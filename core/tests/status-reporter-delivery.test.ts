// The status reporter sends the outbox in sequence order, one report at a time, and drops a
// report from the durable outbox only once the server acknowledged it. The drop is a state
// write that overlaps the next send; a crash before it is durable means a resend (which the
// server recognises as a duplicate), never a loss.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, vi } from 'vitest';
import { AgentStateStore } from '../src/index.js';
import type { DeviceClient } from '../src/runtime/device-client.js';
import { StatusReporter } from '../src/runtime/status-reporter.js';
import { tempDir } from './helpers.js';

async function storeWith(count: number) {
  const dataDir = await tempDir('reporter');
  const store = await AgentStateStore.open(dataDir);
  await store.update((d) => {
    for (let i = 0; i < count; i++) {
      AgentStateStore.enqueue(d, { assignmentId: `a-${i % 3}`, state: 'VERIFYING', reason: '', bytesDone: 0, bytesTotal: 0, deviceTime: '' });
    }
  });
  return { dataDir, store };
}

describe('StatusReporter', () => {
  it('delivers every report once, in sequence order, and empties the durable outbox', async () => {
    const { dataDir, store } = await storeWith(50);
    const sent: number[] = [];
    const client = {
      reportArtifactStatus: async (r: { sequence: number }) => {
        sent.push(r.sequence);
        await new Promise((res) => setTimeout(res, 1));
        return { accepted: true };
      },
    } as unknown as DeviceClient;
    const reporter = new StatusReporter(store, () => client, pino({ level: 'silent' }));
    reporter.wake();
    expect(await reporter.drain(10_000)).toBe(true);
    reporter.stop();
    expect(sent).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const disk = JSON.parse(await readFile(path.join(dataDir, 'state', 'agent-state.json'), 'utf8'));
    expect(disk.outbox).toEqual([]);
  });

  it('keeps what the server has not acknowledged, and sends it again (in order) once the server answers', async () => {
    const { store } = await storeWith(5);
    const sent: number[] = [];
    let down = true;
    const client = {
      reportArtifactStatus: async (r: { sequence: number }) => {
        if (down && r.sequence === 3) throw Object.assign(new Error('unavailable'), { code: grpc.status.UNAVAILABLE });
        sent.push(r.sequence);
        return { accepted: true };
      },
    } as unknown as DeviceClient;
    const reporter = new StatusReporter(store, () => client, pino({ level: 'silent' }));
    reporter.wake();
    // The acknowledged reports leave the outbox by a durable write after the answer: wait for
    // that state rather than a fixed time (a loaded CI machine took over 100 ms).
    await vi.waitFor(
      () => {
        expect(sent).toEqual([1, 2]);
        expect(store.current.outbox.map((r) => r.sequence)).toEqual([3, 4, 5]);
      },
      { timeout: 5000, interval: 20 },
    );
    down = false;
    reporter.wake();
    expect(await reporter.drain(5000)).toBe(true);
    reporter.stop();
    expect(sent).toEqual([1, 2, 3, 4, 5]);
  });
});
