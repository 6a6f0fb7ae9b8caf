// Server outage in the middle of a rollout, with real processes: three real agents, the real
// server. A two-wave rollout starts; while the first wave's agents are in their health probe
// the server is killed (SIGKILL) and stays down (10 s by default; two minutes with
// MESHANICS_LONG_FAULTS=1). Meanwhile the agents finish the update on their own, keep their
// workloads and queue their reports. The server then starts again on the SAME ports with the
// same data dir; the agents reconnect and deliver every queued report, in order, and the
// rollout carries on to its second wave.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getAssignment, openDataDir, publishArtifact, type MeshanicsContext } from '@meshanics/server';
import { serverCli, startAgent, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { LONG, freePort, recordResults, sha256, waitFor } from './fixtures/fault-lib.mjs';

const OUTAGE_MS = LONG ? 120_000 : 10_000;
/** Agents must be back this soon after the server is (channel backoff at most 5 s, heartbeat 1 s, jitter, a loaded CI machine). */
const RECONNECT_BOUND_MS = 20_000;
const AGENTS = ['outage-a', 'outage-b', 'outage-c'];
const FLEET = 'faults';

interface Report {
  sequence: number;
  state: string;
  bytesDone: number;
  reason: string;
  receivedAt: string;
}

let root: string;
let serverDir: string;
let ports: { grpc: number; artifacts: number; enroll: number };
let server: Child;
let ctx: MeshanicsContext;
const agents = new Map<string, Child>();
const v1 = randomBytes(256 * 1024);
const v2 = randomBytes(256 * 1024);
const record: Record<string, unknown> = {};

const agentDir = (name: string) => path.join(root, 'agents', name);
const liveModel = (name: string) => path.join(agentDir(name), 'artifacts', 'model', 'detector', 'model');
const agentState = async (name: string) => JSON.parse(await readFile(path.join(agentDir(name), 'state', 'agent-state.json'), 'utf8'));

function serve(): Promise<Child> {
  return startServer(serverDir, {
    extraArgs: ['--grpc-listen', `127.0.0.1:${ports.grpc}`, '--artifact-listen', `127.0.0.1:${ports.artifacts}`, '--enroll-listen', `127.0.0.1:${ports.enroll}`],
  });
}

async function publish(version: string, bytes: Buffer) {
  const file = path.join(root, `detector-${version}`);
  await writeFile(file, bytes);
  await publishArtifact(ctx, { file, name: 'detector', version, kind: 'model', actor: 'test:faults' });
}

function rollout(version: string, strategy: unknown, initialDelay: number) {
  return serverCli(serverDir, [
    'rollout',
    'create',
    '--fleet',
    FLEET,
    '--artifact',
    `detector@${version}`,
    '--group',
    'everyone',
    '--probe-type',
    'file',
    '--probe-spec',
    JSON.stringify({ path: path.join(root, 'ready') }),
    '--probe-timeout',
    '2',
    '--probe-attempts',
    '1',
    '--probe-initial-delay',
    String(initialDelay),
    '--strategy',
    JSON.stringify(strategy),
  ]);
}

const showRollout = (id: string) => serverCli(serverDir, ['rollout', 'show', id]);

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-outage-'));
  serverDir = path.join(root, 'server');
  await writeFile(path.join(root, 'ready'), 'ok');
  ports = { grpc: await freePort(), artifacts: await freePort(), enroll: await freePort() };
  server = await serve();
  expect(server.grpc).toBe(`127.0.0.1:${ports.grpc}`);
  for (const name of AGENTS) {
    await serverCli(serverDir, ['device', 'issue-cert', '--fleet', FLEET, '--name', name, '--out', path.join(root, 'creds', name)]);
  }
  ctx = await openDataDir({ dataDir: serverDir });
  await publish('1.0.0', v1);
  await publish('2.0.0', v2);
  for (const name of AGENTS) {
    await mkdir(agentDir(name), { recursive: true });
    agents.set(name, startAgent(server, path.join(root, 'creds', name), agentDir(name)));
  }
  await Promise.all([...agents.values()].map((a) => a.waitForLine((l) => l?.msg === 'registered')));
  await serverCli(serverDir, ['group', 'create', '--fleet', FLEET, '--name', 'everyone', '--devices', AGENTS.join(',')]);
  const r = await rollout('1.0.0', { waves: [{ percent: 100, approval: 'auto' }] }, 0);
  await waitFor('1.0.0 everywhere', async () => (await showRollout(r.id)).status === 'completed');
}, 120_000);

afterAll(async () => {
  recordResults('server-outage', record);
  await Promise.all([...agents.values()].map((a) => a.stop()));
  await ctx?.close();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('server outage in the middle of a rollout', () => {
  it(
    `agents keep their workloads, queue their reports through a ${OUTAGE_MS / 1000} s outage and deliver all of them in order on the same ports`,
    async () => {
      for (const name of AGENTS) expect(sha256(await readFile(liveModel(name)))).toBe(sha256(v1));
      // Wave 0 (two agents) probes for 5 s after the swap: the server dies in that window.
      const from = server.lines.length;
      const r = await rollout(
        '2.0.0',
        {
          waves: [
            { percent: 50, approval: 'auto' },
            { percent: 100, approval: 'auto' },
          ],
          max_failure_rate: 0,
        },
        5,
      );
      const wave0: string[] = r.devices.filter((d: { wave: number }) => d.wave === 0).map((d: { name: string }) => d.name);
      const wave1: string[] = r.devices.filter((d: { wave: number }) => d.wave === 1).map((d: { name: string }) => d.name);
      expect(wave0).toHaveLength(2);
      // The server's own log says when it stored each APPLYING (no polling delay).
      const applying = (name: string) =>
        server.lines
          .slice(from)
          .some((l) => l.includes('"artifact status reported"') && l.includes(`/device/${name}"`) && l.includes('"state":"APPLYING"') && l.includes('"accepted":true'));
      await waitFor('wave 0 to report APPLYING', () => wave0.every(applying), { timeoutMs: 30_000, intervalMs: 50 });

      // The outage.
      const killedAt = Date.now();
      await server.stop('SIGKILL');
      const pids = new Map([...agents].map(([n, a]) => [n, a.proc.pid]));
      const samples: Array<Record<string, unknown>> = [];
      const queued = new Map<string, Array<{ sequence: number; state: string; assignmentId: string }>>();
      while (Date.now() - killedAt < OUTAGE_MS) {
        await new Promise((res) => setTimeout(res, Math.min(2000, OUTAGE_MS / 5)));
        for (const name of AGENTS) {
          const a = agents.get(name)!;
          expect(a.proc.exitCode, `${name} exited during the outage`).toBeNull();
          const state = await agentState(name);
          // Workloads: wave 0 finishes 2.0.0 on its own (probe healthy), wave 1 stays on 1.0.0.
          const live = sha256(await readFile(liveModel(name)));
          expect([sha256(v1), sha256(v2)]).toContain(live);
          for (const rep of state.outbox) {
            const list = queued.get(name) ?? [];
            if (!list.some((q) => q.sequence === rep.sequence)) list.push({ sequence: rep.sequence, state: rep.state, assignmentId: rep.assignmentId });
            queued.set(name, list);
          }
          samples.push({ t: Math.round((Date.now() - killedAt) / 1000), agent: name, outbox: state.outbox.length, live: live === sha256(v2) ? '2.0.0' : '1.0.0' });
        }
      }
      // By the end of the outage wave 0 is HEALTHY on the device, its report still queued.
      for (const name of wave0) {
        const state = await agentState(name);
        expect(sha256(await readFile(liveModel(name)))).toBe(sha256(v2));
        expect(Object.values(state.completed).map((c) => (c as { state: string }).state)).toContain('HEALTHY');
        expect(state.outbox.map((o: { state: string }) => o.state)).toContain('HEALTHY');
      }
      for (const name of wave1) expect(sha256(await readFile(liveModel(name)))).toBe(sha256(v1));
      // The agents' calls wait for the channel within their 15 s deadline (wait-for-ready,
      // core/src/runtime/device-client.ts), so a 10 s outage need not log a failed heartbeat or
      // report; the queued reports above are what shows the outage was felt. A longer one does.
      if (OUTAGE_MS > 20_000) {
        for (const a of agents.values()) expect(a.lines.some((l) => l.includes('heartbeat failed'))).toBe(true);
      }

      // Back on the same ports, same data dir.
      const restartedAt = Date.now();
      server = await serve();
      expect(server.grpc).toBe(`127.0.0.1:${ports.grpc}`);
      const done = await waitFor(
        'the rollout to complete after the outage',
        async () => {
          const d = await showRollout(r.id);
          return d.status === 'completed' && d;
        },
        { timeoutMs: LONG ? 300_000 : 90_000, intervalMs: 500 },
      );
      const recoveredInMs = Date.now() - restartedAt;
      expect(done.counts.HEALTHY).toBe(3);
      for (const name of AGENTS) {
        await waitFor(`${name} to empty its outbox`, async () => (await agentState(name)).outbox.length === 0, { timeoutMs: 30_000 });
        expect(sha256(await readFile(liveModel(name)))).toBe(sha256(v2));
        // Same pid: nobody restarted the agents.
        expect(agents.get(name)!.proc.pid).toBe(pids.get(name));
      }

      // Every report queued during the outage is on the server, under its sequence, and the
      // server stored them in sequence order.
      const perAgent: Record<string, unknown> = {};
      for (const name of AGENTS) {
        const state = await agentState(name);
        const ids = Object.keys(state.completed);
        const problems: string[] = [];
        let stored = 0;
        for (const id of ids) {
          const view = await getAssignment(ctx, id);
          const reports = view.reports as Report[];
          stored += reports.length;
          const seqs = reports.map((x) => x.sequence);
          if (seqs.some((s, i) => i > 0 && s <= seqs[i - 1]!)) problems.push(`${id}: sequences ${seqs.join(',')}`);
          const times = reports.map((x) => Date.parse(x.receivedAt));
          if (times.some((t, i) => i > 0 && t < times[i - 1]!)) problems.push(`${id}: stored out of order`);
          if (reports.filter((x) => ['HEALTHY', 'ROLLED_BACK', 'FAILED'].includes(x.state)).length !== 1) problems.push(`${id}: not exactly one terminal report`);
          if (reports.at(-1)?.state !== 'HEALTHY') problems.push(`${id}: ends ${reports.at(-1)?.state}`);
        }
        const lost: Array<{ sequence: number; state: string; assignmentId: string }> = [];
        for (const q of queued.get(name) ?? []) {
          if (q.state === 'DOWNLOADING') continue; // progress may be superseded by design
          const reports = (await getAssignment(ctx, q.assignmentId)).reports as Report[];
          if (!reports.some((x) => x.sequence === q.sequence && x.state === q.state)) lost.push(q);
        }
        if (lost.length > 0) problems.push(`queued during the outage but never stored: ${lost.map((l) => `${l.sequence}:${l.state}`).join(', ')}`);
        perAgent[name] = {
          wave: wave0.includes(name) ? 0 : 1,
          queuedDuringOutage: (queued.get(name) ?? []).map((q) => `${q.sequence}:${q.state}`),
          storedReports: stored,
          problems,
        };
        expect(problems, `${name}: ${problems.join('; ')}`).toEqual([]);
      }
      // How long after the restart each agent was back: its last failed heartbeat (agent log,
      // epoch ms) and, for wave 0, the first of its queued reports the server stored (server
      // log, ISO time). grpc-js alone would wait up to 120 s between reconnect attempts; the
      // agent caps that at 5 s (core/src/runtime/device-client.ts, RECONNECT_BACKOFF).
      const timeOf = (line: string): number => {
        try {
          const t = (JSON.parse(line) as { time?: number | string }).time;
          return typeof t === 'number' ? t : Date.parse(t ?? '');
        } catch {
          return Number.NaN;
        }
      };
      const reconnect = Object.fromEntries(
        AGENTS.map((name) => {
          const a = agents.get(name)!;
          const failures = a.lines.filter((l) => l.includes('heartbeat failed'));
          const lastFailure = failures
            .map(timeOf)
            .filter((t) => t >= restartedAt)
            .at(-1);
          const firstReport = server.lines
            .filter((l) => l.includes('"artifact status reported"') && l.includes(`/device/${name}"`))
            .map(timeOf)
            .find((t) => t >= restartedAt);
          return [
            name,
            {
              heartbeatFailures: failures.length,
              failingAfterRestartMs: lastFailure === undefined ? 0 : lastFailure - restartedAt,
              firstReportAfterRestartMs: firstReport === undefined ? null : firstReport - restartedAt,
            },
          ];
        }),
      );
      console.log(`[faults] reconnect after the restart: ${JSON.stringify(reconnect)}`);
      for (const name of AGENTS) {
        expect(reconnect[name]!.failingAfterRestartMs, `${name} kept failing its heartbeat after the restart`).toBeLessThan(RECONNECT_BOUND_MS);
      }
      for (const name of wave0) {
        const first = reconnect[name]!.firstReportAfterRestartMs;
        expect(first, `${name}: no report stored after the restart`).not.toBeNull();
        expect(first!, `${name}: first queued report stored ${first} ms after the restart`).toBeLessThan(RECONNECT_BOUND_MS);
      }
      Object.assign(record, { outageMs: OUTAGE_MS, recoveredInMs, reconnectBoundMs: RECONNECT_BOUND_MS, wave0, wave1, samples, perAgent, reconnect });
      console.log(
        `[faults] outage ${OUTAGE_MS / 1000} s: rollout completed ${Math.round(recoveredInMs / 100) / 10} s after the restart; queued: ${JSON.stringify(Object.fromEntries([...queued].map(([n, q]) => [n, q.length])))}`,
      );
    },
    LONG ? 900_000 : 180_000,
  );
});
