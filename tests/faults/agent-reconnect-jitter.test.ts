// A server restart with real processes: four real agents heartbeating every second, the real
// server stopped (SIGTERM) for 5 s and started again on the same data dir and ports. The agents
// never give up (none exits, each is back within seconds of the restart) and their retries are
// not synchronized: every retry delay the agents logged lies in the schedule's window
// (core/src/runtime/retry-backoff.ts, capped at the 1 s heartbeat interval), and agents with the
// same number of failures drew different delays. (The earlier schedule clamped every retry to
// the interval here: all agents retried exactly 1000 ms after each failure, in lockstep.)
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverCli, startAgent, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { freePort, waitFor } from './fixtures/fault-lib.mjs';

const AGENTS = ['jitter-a', 'jitter-b', 'jitter-c', 'jitter-d'];
const DOWN_MS = 5000;
const HEARTBEAT_SECONDS = 1;

let root: string;
let serverDir: string;
let ports: { grpc: number; artifacts: number; enroll: number };
let server: Child | undefined;
const agents = new Map<string, Child>();

function serve(): Promise<Child> {
  return startServer(serverDir, {
    heartbeatSeconds: HEARTBEAT_SECONDS,
    extraArgs: ['--grpc-listen', `127.0.0.1:${ports.grpc}`, '--artifact-listen', `127.0.0.1:${ports.artifacts}`, '--enroll-listen', `127.0.0.1:${ports.enroll}`],
  });
}

interface LogLine {
  msg?: string;
  time?: number;
  failures?: number;
  retryInMs?: number;
}
const logOf = (a: Child): LogLine[] =>
  a.lines.flatMap((l) => {
    try {
      return [JSON.parse(l) as LogLine];
    } catch {
      return [];
    }
  });

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-jitter-'));
  serverDir = path.join(root, 'server');
  ports = { grpc: await freePort(), artifacts: await freePort(), enroll: await freePort() };
  server = await serve();
  for (const name of AGENTS) {
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'storm', '--name', name, '--out', path.join(root, 'creds', name)]);
    await mkdir(path.join(root, 'agents', name), { recursive: true });
    agents.set(name, startAgent(server, path.join(root, 'creds', name), path.join(root, 'agents', name)));
  }
  await Promise.all([...agents.values()].map((a) => a.waitForLine((l) => l?.msg === 'registered')));
}, 120_000);

afterAll(async () => {
  await Promise.all([...agents.values()].map((a) => a.stop()));
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('agents through a server restart', () => {
  it('come back without giving up, with retry delays drawn from the jittered window, not in lockstep', async () => {
    await server!.stop('SIGTERM');
    server = undefined;
    await new Promise((r) => setTimeout(r, DOWN_MS));
    server = await serve();
    const restartedAt = Date.now();
    await waitFor(
      'every agent to heartbeat again',
      () => AGENTS.every((name) => logOf(agents.get(name)!).some((l) => l.msg === 'heartbeat back' && (l.time ?? 0) >= restartedAt)),
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    const byFailureCount = new Map<number, number[]>();
    for (const name of AGENTS) {
      const a = agents.get(name)!;
      expect(a.proc.exitCode, `${name} exited`).toBeNull();
      const failed = logOf(a).filter((l) => l.msg === 'heartbeat failed');
      // Down 5 s with a 1 s interval: several failures each, every one retried, none given up on.
      expect(failed.length, `${name} failures`).toBeGreaterThanOrEqual(3);
      for (const f of failed) {
        expect(f.retryInMs).toBeGreaterThanOrEqual(0);
        expect(f.retryInMs, `${name}: retry after failure ${f.failures}`).toBeLessThan(HEARTBEAT_SECONDS * 1000);
        byFailureCount.set(f.failures!, [...(byFailureCount.get(f.failures!) ?? []), f.retryInMs!]);
      }
    }
    // The same failure count, four agents: four independent draws, not one shared delay.
    const shared = [...byFailureCount.entries()].filter(([, delays]) => delays.length === AGENTS.length);
    expect(shared.length).toBeGreaterThanOrEqual(2);
    for (const [failures, delays] of shared) {
      expect(new Set(delays).size, `delays after failure ${failures}: ${delays.join(', ')}`).toBeGreaterThan(1);
    }
    const all = [...byFailureCount.values()].flat();
    expect(Math.max(...all) - Math.min(...all), 'the retry delays spread over the window').toBeGreaterThan(300);
  }, 90_000);
});
