// A server restart with real processes (issue 30, reconnect storm): four real agents
// heartbeating every 2 s, the real server stopped (SIGTERM) for 6 s and started again on the
// same data dir and ports. The agents never give up (none exits, each heartbeats again within
// the channel's reconnect backoff of the restart) and no heartbeat fails without waiting: a
// call made while the server is down waits for the channel's next connection attempt
// (wait-for-ready, core/src/runtime/device-client.ts) until its deadline, instead of failing
// at once. Before, grpc-js failed every call made during
// its reconnect backoff with UNAVAILABLE and each such failure widened the agent's retry window
// while the server was already back: these agents logged several failed heartbeats each.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CALL_DEADLINE_MS, RECONNECT_BACKOFF } from '@meshanics/core';
import { serverCli, startAgent, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { freePort, waitFor } from './fixtures/fault-lib.mjs';

const AGENTS = ['restart-a', 'restart-b', 'restart-c', 'restart-d'];
const DOWN_MS = 6000;
const HEARTBEAT_SECONDS = 2;
/** The channel's longest backoff with grpc-js's +20 % jitter, plus a loaded machine's slack. */
const BACK_WITHIN_MS = RECONNECT_BACKOFF.maxMs * 1.2 + 4000;

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
  tookMs?: number;
  err?: string;
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
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-restart-'));
  serverDir = path.join(root, 'server');
  ports = { grpc: await freePort(), artifacts: await freePort(), enroll: await freePort() };
  server = await serve();
  for (const name of AGENTS) {
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'storm', '--name', name, '--out', path.join(root, 'creds', name)]);
    await mkdir(path.join(root, 'agents', name), { recursive: true });
    // Debug: the agent logs every answered heartbeat ("heartbeat answered").
    agents.set(name, startAgent(server, path.join(root, 'creds', name), path.join(root, 'agents', name), { extraArgs: ['--log-level', 'debug'] }));
  }
  await Promise.all([...agents.values()].map((a) => a.waitForLine((l) => l?.msg === 'registered')));
  await waitFor('every agent to heartbeat', () => AGENTS.every((name) => logOf(agents.get(name)!).some((l) => l.msg === 'heartbeat answered')), {
    timeoutMs: 30_000,
    intervalMs: 100,
  });
}, 120_000);

afterAll(async () => {
  await Promise.all([...agents.values()].map((a) => a.stop()));
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('agents through a server restart', () => {
  it('wait for the channel instead of failing at once, never give up, and are all back within its reconnect backoff', async () => {
    expect(DOWN_MS, 'the outage must be shorter than a call deadline for this test').toBeLessThan(CALL_DEADLINE_MS - RECONNECT_BACKOFF.maxMs * 1.2);
    await server!.stop('SIGTERM');
    server = undefined;
    const downAt = Date.now();
    await new Promise((r) => setTimeout(r, DOWN_MS));
    const restartingAt = Date.now();
    server = await serve();
    const listeningAt = Date.now();
    const backAt = new Map<string, number>();
    await waitFor(
      'every agent to heartbeat again',
      () => {
        for (const name of AGENTS) {
          const t = logOf(agents.get(name)!).find((l) => l.msg === 'heartbeat answered' && (l.time ?? 0) >= restartingAt)?.time;
          if (t !== undefined) backAt.set(name, t);
        }
        return backAt.size === AGENTS.length;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const report: Record<string, unknown> = {};
    for (const name of AGENTS) {
      const a = agents.get(name)!;
      expect(a.proc.exitCode, `${name} exited`).toBeNull();
      const failed = logOf(a).filter((l) => l.msg === 'heartbeat failed' && (l.time ?? 0) >= downAt);
      report[name] = { backAfterListeningMs: backAt.get(name)! - listeningAt, failedHeartbeats: failed.map((f) => f.err) };
      // Down 6 s with a 2 s interval: every agent heartbeated during the outage. No call failed
      // without waiting: a failure is a deadline that passed while the channel kept trying
      // (the outage as the agents saw it also holds the new server's start, seconds on a
      // loaded machine), never an UNAVAILABLE at once.
      const early = failed.filter((f) => !/^4 DEADLINE_EXCEEDED/.test(f.err ?? ''));
      expect(
        early.map((f) => f.err),
        `${name}: heartbeats failed without waiting for the channel`,
      ).toEqual([]);
      expect(failed.length, `${name}: one deadline per ${CALL_DEADLINE_MS} ms of outage at most`).toBeLessThanOrEqual(Math.ceil((listeningAt - downAt) / CALL_DEADLINE_MS) + 1);
      expect(backAt.get(name)! - listeningAt, `${name}: back after the restart`).toBeLessThan(BACK_WITHIN_MS);
    }
    console.log(`[faults] restart: down ${listeningAt - downAt} ms (server start ${listeningAt - restartingAt} ms): ${JSON.stringify(report)}`);
  }, 90_000);
});
