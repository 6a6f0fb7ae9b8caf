// Crash injection end to end: the real `meshanics-agent run` binary (with the fault injector
// added to its plugin list by path) against the real `meshanics-server serve`, over mTLS.
// The agent kills itself with SIGKILL at a seeded point of an assignment, is started again
// on the same data dir, and then the SERVER's view is checked: every report the agent
// persisted arrived, none was counted twice, sequence numbers only grow, and each assignment
// has exactly one terminal state, the last one, matching the bytes on the device.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAssignment, getAssignment, openDataDir, publishArtifact, type MeshanicsContext } from '@meshanics/server';
import { serverCli, startAgent, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { FIXTURES, LONG, baseSeed, prng, recordResults, sha256, waitFor } from './fixtures/fault-lib.mjs';

const INJECTOR = path.join(FIXTURES, 'fault-injector.mjs');
const PLUGINS = ['@meshanics/artifact-model', '@meshanics/artifact-config', '@meshanics/probe-file', '@meshanics/probe-exec', '@meshanics/probe-http', INJECTOR].join(',');
const TERMINAL = new Set(['HEALTHY', 'ROLLED_BACK', 'FAILED']);
const LIFECYCLE = ['DOWNLOADING', 'VERIFYING', 'APPLYING'];
const SEED = baseSeed();

interface Point {
  phase: string;
  match: string;
  /** Highest occurrence to draw from (seeded), default 1. */
  within?: number;
  probeOk: boolean;
  what: string;
}

/** Where the real agent dies: one per phase, the occurrence drawn from the seed. */
const APPLY_POINTS: Point[] = [
  { phase: 'apply', match: '^fs\\.link ', probeOk: true, what: 'taking the backup hard link' },
  { phase: 'apply', match: '^fs\\.rename .*incoming.* -> .*/model$', probeOk: true, what: 'the swap rename' },
];
const POINTS: Point[] = [
  // The agent writes a download in 1 MiB batches (core/src/transport/streaming-download.ts):
  // a 4 MiB target is 4 writes; dying at the 2nd or later leaves bytes to resume from.
  { phase: 'download', match: '^handle\\.writev? .*/target', within: 4, probeOk: true, what: 'streaming the target to staging' },
  { phase: 'verify', match: '^hook:verify', probeOk: true, what: 'entering the verify hooks' },
  // The default run takes one of the apply points (seeded); the long run takes both.
  ...(LONG ? APPLY_POINTS : [APPLY_POINTS[Math.floor(prng(SEED)() * APPLY_POINTS.length)]!]),
  { phase: 'probe', match: '^hook:probe', probeOk: true, what: 'the first probe attempt' },
  { phase: 'rollback', match: '^fs\\.rename .*previous -> .*/model$', probeOk: false, what: 'the rollback rename' },
  { phase: 'cleanup', match: '^hook:cleanup', probeOk: true, what: 'right after HEALTHY was persisted' },
  // The server stored the report, the agent has not yet dropped it from its outbox: after the
  // restart it is sent again, and must not be counted twice.
  { phase: '*', match: '^report acked APPLYING', probeOk: true, what: 'after the server stored APPLYING, before the outbox dropped it' },
  ...(LONG
    ? [
        { phase: 'apply', match: 'agent-state\\.json$', within: 2, probeOk: true, what: 'persisting the swap record (checkpoint)' },
        { phase: 'apply', match: '^handle\\.sync model/detector', within: 2, probeOk: true, what: 'fsync of the live directory' },
        { phase: 'probe', match: 'agent-state\\.json$', probeOk: true, what: 'persisting HEALTHY' },
        { phase: 'rollback', match: '^hook:rollback', probeOk: false, what: 'entering the rollback hooks' },
        { phase: 'download', match: '^handle\\.writev? .*/target', within: 4, probeOk: true, what: 'streaming the target (again)' },
      ]
    : []),
];

let root: string;
let serverDir: string;
let certDir: string;
let agentDir: string;
let readyFile: string;
let server: Child;
let ctx: MeshanicsContext;
let agent: Child | undefined;
const versions = new Map<string, Buffer>();
const rows: Array<Record<string, unknown>> = [];

function start(env: Record<string, string> = {}): Child {
  return startAgent(server, certDir, agentDir, {
    extraArgs: ['--plugins', PLUGINS, '--container-runtime', 'none', '--log-level', 'info'],
    env: {
      MESHANICS_FAULT_INJECT: JSON.stringify({
        controlFile: path.join(root, 'arm.json'),
        crashLog: path.join(root, 'crash.json'),
        ledger: path.join(root, 'ledger.ndjson'),
      }),
      ...env,
    },
  });
}

// The operator side runs in this process on the server's data dir, exactly like the CLI
// commands do (same functions, same database, next to the running `serve`).
async function publish(version: string): Promise<void> {
  const bytes = randomBytes(4 * 1024 * 1024);
  const file = path.join(root, `detector-${version}`);
  await writeFile(file, bytes);
  await publishArtifact(ctx, { file, name: 'detector', version, kind: 'model', actor: 'test:faults' });
  versions.set(version, bytes);
}

async function assign(version: string, probeOk: boolean): Promise<string> {
  return (
    await createAssignment(ctx, {
      fleet: 'faults',
      device: 'e2e-crash',
      artifact: 'detector',
      version,
      probe: { type: 'file', spec: { path: probeOk ? readyFile : path.join(root, 'never') }, timeoutSeconds: 1, attempts: 1 },
      actor: 'test:faults',
    })
  ).assignmentId;
}

/** The server's view of an assignment once it is terminal. */
function terminalView(id: string, timeoutMs = 60_000) {
  return waitFor(
    `assignment ${id} to be terminal on the server`,
    async () => {
      const view = await getAssignment(ctx, id);
      return TERMINAL.has(view.state) && view;
    },
    { timeoutMs },
  );
}

async function ledger(): Promise<Array<{ assignmentId: string; sequence: number; state: string; bytesDone: number }>> {
  const text = await readFile(path.join(root, 'ledger.ndjson'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-crash-e2e-'));
  serverDir = path.join(root, 'server');
  certDir = path.join(root, 'creds');
  agentDir = path.join(root, 'agent');
  readyFile = path.join(root, 'ready');
  await writeFile(readyFile, 'ok');
  await mkdir(agentDir, { recursive: true });
  server = await startServer(serverDir);
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'faults', '--name', 'e2e-crash', '--out', certDir]);
  ctx = await openDataDir({ dataDir: serverDir });
  await publish('1.0.0');
  for (let i = 0; i < POINTS.length; i++) await publish(`2.${i}.0`);
  agent = start();
  await agent.waitForLine((l) => l?.msg === 'registered');
  const first = await terminalView(await assign('1.0.0', true));
  expect(first.state).toBe('HEALTHY');
}, 90_000);

afterAll(async () => {
  recordResults('crash-e2e', { trials: rows });
  await agent?.stop();
  await ctx?.close();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('crash injection with the real agent and server processes', () => {
  it(
    `kill -9 at ${POINTS.length} seeded points: the server view loses no report, counts none twice, ends each assignment once`,
    async () => {
      const random = prng(SEED);
      let live = '1.0.0';
      const seen = new Map<number, string>();
      for (const [i, point] of POINTS.entries()) {
        const version = `2.${i}.0`;
        const occurrence = 1 + Math.floor(random() * (point.within ?? 1));
        await writeFile(path.join(root, 'arm.json'), JSON.stringify({ phase: point.phase, match: point.match, occurrence }));
        await rm(path.join(root, 'crash.json'), { force: true });
        const id = await assign(version, point.probeOk);
        const exit = await agent!.exitWithin(45_000);
        expect(exit, `the agent was not killed at ${point.phase} /${point.match}/ #${occurrence}`).toEqual({ code: null, signal: 'SIGKILL' });
        const died = JSON.parse(await readFile(path.join(root, 'crash.json'), 'utf8'));
        const queuedAtCrash = JSON.parse(await readFile(path.join(agentDir, 'state', 'agent-state.json'), 'utf8')).outbox.length;

        // Restart on the same data dir, as systemd would.
        agent = start();
        const view = await terminalView(id);
        // Let the agent deliver whatever follows the terminal report, then read the server.
        await new Promise((r) => setTimeout(r, 300));
        const final = await getAssignment(ctx, id);
        const reports: Array<{ sequence: number; state: string; bytesDone: number; reason: string }> = final.reports;
        const problems: string[] = [];

        const seqs = reports.map((r) => r.sequence);
        if (seqs.some((s, k) => k > 0 && s <= seqs[k - 1]!)) problems.push(`sequences not strictly increasing: ${seqs.join(',')}`);
        for (const r of reports) {
          if (seen.has(r.sequence)) problems.push(`sequence ${r.sequence} stored twice (also for ${seen.get(r.sequence)})`);
          seen.set(r.sequence, id);
        }
        const terminals = reports.filter((r) => TERMINAL.has(r.state));
        if (terminals.length !== 1) problems.push(`${terminals.length} terminal reports: ${reports.map((r) => r.state).join(',')}`);
        if (!TERMINAL.has(reports.at(-1)?.state ?? '')) problems.push('the last report is not terminal');
        if (final.state !== reports.at(-1)?.state) problems.push(`assignment state ${final.state} is not its last report`);
        // Lifecycle order among the non-terminal reports (DOWNLOADING may repeat: "resuming").
        const order = reports.filter((r) => !TERMINAL.has(r.state)).map((r) => LIFECYCLE.indexOf(r.state));
        const restarts = reports.filter((r) => r.state === 'DOWNLOADING' && /resuming after agent restart/.test(r.reason)).length;
        const drops = order.filter((o, k) => k > 0 && o < order[k - 1]!).length;
        if (drops > restarts) problems.push(`states out of lifecycle order: ${reports.map((r) => r.state).join(',')}`);
        // Nothing the agent persisted was lost: every queued report (bar progress superseded
        // before it was sent, by design) is on the server under the same sequence.
        const persisted = (await ledger()).filter((l) => l.assignmentId === id && !(l.state === 'DOWNLOADING' && l.bytesDone > 0));
        const missing = persisted.filter((l) => !reports.some((r) => r.sequence === l.sequence && r.state === l.state));
        if (missing.length > 0) problems.push(`persisted but never stored: ${missing.map((m) => `${m.sequence}:${m.state}`).join(', ')}`);
        // The device runs what the server believes.
        const liveBytes = await readFile(path.join(agentDir, 'artifacts', 'model', 'detector', 'model'));
        const expected = view.state === 'HEALTHY' ? version : live;
        if (sha256(liveBytes) !== sha256(versions.get(expected)!)) problems.push(`the device does not run ${expected}`);
        if (view.state === 'HEALTHY') live = version;

        rows.push({
          trial: i + 1,
          seed: SEED,
          phase: point.phase,
          point: `${point.what} (${died.label}, occurrence ${occurrence})`,
          queuedAtCrash,
          result: view.state,
          reason: view.reason,
          reports: reports.map((r) => `${r.sequence}:${r.state}`).join(' '),
          problems,
        });
        expect(problems, `${point.phase} /${point.match}/: ${problems.join('; ')}`).toEqual([]);
        // Apply, probe and rollback crashes end ROLLED_BACK; earlier ones resume to the natural end.
        if (point.phase === '*') {
          // The resent report reached the server and was recognised as one it already had.
          const resent = server.lines.filter((l) => l.includes('"artifact status reported"') && l.includes(id) && l.includes('"accepted":false'));
          expect(resent.length, 'the report acknowledged before the crash was not resent').toBeGreaterThan(0);
          rows.at(-1)!.duplicatesRefused = resent.length;
        }
        const naturalEnd = point.probeOk ? 'HEALTHY' : 'ROLLED_BACK';
        if (['download', 'verify', 'cleanup'].includes(point.phase)) expect(view.state).toBe(naturalEnd);
        if (['apply', 'probe', 'rollback'].includes(point.phase)) {
          expect(view.state).toBe('ROLLED_BACK');
        }
      }
      console.log(
        `[faults] crash e2e (seed ${SEED}):\n${rows.map((r) => `${r.problems && (r.problems as string[]).length ? 'FAIL' : 'ok  '} ${String(r.phase)} at ${String(r.point)} -> ${String(r.result)}; reports ${String(r.reports)}`).join('\n')}`,
      );
    },
    LONG ? 900_000 : 240_000,
  );
});
