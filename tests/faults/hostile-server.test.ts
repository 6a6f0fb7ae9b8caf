// The agent bounds what the server tells it: a real agent process against a real gRPC server
// over mTLS (fixtures/fake-device-service.mjs, with the certificates a real `meshanics-server
// init` made) that answers with hostile values. A malicious or buggy server can make the
// device do no more than a normal one would.
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRunArgs, serverCli, spawnAgent } from '../../scripts/lib/processes.mjs';
import { startFakeDeviceService } from './fixtures/fake-device-service.mjs';
import { waitFor } from './fixtures/fault-lib.mjs';

// The agent's own bounds (core/src/runtime/agent-daemon.ts, core/src/logs/log-uploader.ts).
const HEARTBEAT_SECONDS_MAX = 3600;
const MAX_LOG_REQUESTS = 4;
const MAX_LOG_BYTES = 16 * 1024 * 1024;

let root: string;
let serverDir: string;
let creds: string;
const r = (f: string) => readFile(f, 'utf8');

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-hostile-'));
  serverDir = path.join(root, 'server');
  creds = path.join(root, 'creds');
  await serverCli(serverDir, ['init']);
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'faults', '--name', 'hostile', '--out', creds]);
}, 60_000);
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function withHostileServer(
  label: string,
  options: { heartbeatSeconds: number; logRequests?: (heartbeat: number) => unknown[]; uploadAnswerDelayMs?: number },
  beforeStart: (dataDir: string) => Promise<void>,
  body: (fake: Awaited<ReturnType<typeof startFakeDeviceService>>, agent: ReturnType<typeof spawnAgent>) => Promise<void>,
) {
  const fake = await startFakeDeviceService({
    caPem: await r(path.join(creds, 'ca.crt')),
    certPem: await r(path.join(serverDir, 'pki', 'server.crt')),
    keyPem: await r(path.join(serverDir, 'pki', 'server.key')),
    assignments: [],
    ...options,
  });
  const dataDir = path.join(root, label);
  await beforeStart(dataDir);
  const agent = spawnAgent([...agentRunArgs({ grpc: fake.address, artifacts: 'https://127.0.0.1:9' }, creds, dataDir), '--container-runtime', 'none', '--log-level', 'warn']);
  try {
    await body(fake, agent);
    expect(agent.proc.exitCode, `the agent exited: ${agent.lines.slice(-5).join('\n')}`).toBeNull();
  } finally {
    await agent.stop('SIGKILL');
    await fake.close();
  }
}

describe('an agent whose server answers with hostile values', () => {
  it('clamps a heartbeat interval of 2^32-1 s instead of overflowing the timer into a tight loop', async () => {
    // Node clamps a timer above 2^31-1 ms to 1 ms: before the clamp this was thousands of
    // heartbeats a second.
    await withHostileServer(
      'interval',
      { heartbeatSeconds: 4_294_967_295 },
      async () => undefined,
      async (fake, agent) => {
        await waitFor('the first heartbeat', () => fake.stats.heartbeats > 0, { timeoutMs: 30_000 });
        await new Promise((res) => setTimeout(res, 3000));
        expect(fake.stats.heartbeats).toBe(1);
        const clamped = await agent.waitForLine((l: { msg?: string; used?: number }) => l?.msg?.includes('heartbeat interval outside') === true, 5000);
        expect(clamped).toMatchObject({ requested: 4_294_967_295, used: HEARTBEAT_SECONDS_MAX });
      },
    );
  }, 60_000);

  it('takes at most four log requests at a time, uploads them one at a time, each within the byte budget', async () => {
    // Every heartbeat (each second) asks for 25 new bundles with no byte limit to speak of.
    let asked = 0;
    const logRequests = (heartbeat: number) =>
      Array.from({ length: 25 }, (_, i) => {
        asked += 1;
        return { logRequestId: `00000000-0000-4000-8000-${String(heartbeat * 100 + i).padStart(12, '0')}`, since: '', until: '', maxBytes: Number.MAX_SAFE_INTEGER };
      });
    // The agent's own log file (its source without journald) holds more than the budget.
    const line = `${JSON.stringify({ level: 30, time: Date.now(), msg: 'x'.repeat(1000) })}\n`;
    const prepare = async (dataDir: string) => {
      await mkdir(path.join(dataDir, 'logs'), { recursive: true });
      await writeFile(path.join(dataDir, 'logs', 'agent.log'), line.repeat(Math.ceil((MAX_LOG_BYTES + 1024 * 1024) / line.length)));
    };
    // Each upload is answered after 500 ms, so uploads sent at once would overlap at the server.
    await withHostileServer('logs', { heartbeatSeconds: 1, logRequests, uploadAnswerDelayMs: 500 }, prepare, async (fake) => {
      await waitFor('three heartbeats', () => fake.stats.heartbeats >= 3, { timeoutMs: 30_000 });
      await waitFor('two uploads', () => fake.stats.uploads.length > 1, { timeoutMs: 30_000 });
      await new Promise((res) => setTimeout(res, 2000));
      const { heartbeats, uploads, maxUploadsAtOnce } = fake.stats;
      console.log(`[faults] hostile log requests: ${asked} asked over ${heartbeats} heartbeats, ${uploads.length} uploaded, at most ${maxUploadsAtOnce} at once`);
      expect(maxUploadsAtOnce).toBe(1);
      // At most four queued at any time: never more uploads than 4 + what one heartbeat may add per heartbeat.
      expect(uploads.length).toBeLessThanOrEqual(MAX_LOG_REQUESTS * heartbeats);
      for (const u of uploads) expect(gunzipSync(u.gzip).length).toBeLessThanOrEqual(MAX_LOG_BYTES);
      expect(gunzipSync(uploads[0]!.gzip).length).toBeGreaterThan(MAX_LOG_BYTES - 2 * line.length);
      expect(new Set(uploads.map((u) => u.logRequestId)).size).toBe(uploads.length);
    });
  }, 90_000);
});
