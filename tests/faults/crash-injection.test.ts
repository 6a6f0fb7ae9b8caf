// Crash injection: the agent is killed with SIGKILL at seeded points of the pipeline
// (download, verify, every step of apply, probe, rollback, the cleanup after a terminal
// state) while it updates a model, a config file (with an allowlisted reload) and, when the
// real container runtime is there, a container. Then it restarts on the same data dir:
// `recoverInterrupted`, and the assignment runs again if it is still in flight, exactly what
// the agent daemon does at start. After every trial:
//   - the device is on a known version: the live bytes are exactly v1 or exactly v2 (the
//     running container carries the old or the new digest and serves that version), and the
//     installed record says which;
//   - nothing torn or temporary is left in the live directory, no staging leftovers;
//   - the assignment reached exactly one terminal state, recorded in the durable outbox as its
//     last report, with strictly increasing sequence numbers;
//   - a config service was last reloaded with the bytes that are live.
//
// The child is the real pipeline with the real plugins (tests/faults/fixtures/crash-child.mjs)
// against the real server's TUF repository over mTLS; the fault injector only picks the
// moment of death (tests/faults/fixtures/fault-injector.mjs). Points are chosen from a
// traced dry run of the same update: seeded random points for download, verify, probe and
// cleanup, and every point of apply and rollback that is not the agent's own state-file
// write (plus seeded ones among those); for config, every step of its own (directories, the
// reload) plus a seeded sample of the swap it shares with the model plugin. Container points
// are named by runtime call, in two lanes of chained updates. MESHANICS_FAULT_SEED changes
// the seed; MESHANICS_LONG_FAULTS=1 multiplies the random points and covers every state write.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recoverInterrupted, runPipeline, type Assignment } from '@meshanics/core';
import { openDataDir, publishArtifact, type MeshanicsContext } from '@meshanics/server';
import { serverCli, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { findRuntime, type RuntimeEnv } from '../../plugins/artifact-container/tests/helpers/runtime-env.js';
import { startPrivateStore, type PrivateStore } from '../../plugins/artifact-container/tests/helpers/private-store.js';
import { openDevice } from './fixtures/device.mjs';
import { FIXTURES, IN_CI, LONG, baseSeed, freePort, pickPoint, pool, readTrace, recordResults, runNode, sha256 } from './fixtures/fault-lib.mjs';

const CHILD = path.join(FIXTURES, 'crash-child.mjs');
const TERMINAL = new Set(['HEALTHY', 'ROLLED_BACK', 'FAILED']);
// Trials wait on fsync and on the runtime as much as on the CPU: four at a time on two cores.
const CONCURRENCY = 4;
const CONTAINER_LANES = 2;
const SEED = baseSeed();

type Scenario = 'ok' | 'fail';
type Phase = 'start' | 'download' | 'verify' | 'apply' | 'probe' | 'rollback' | 'cleanup';
interface TracePoint {
  phase: Phase;
  n: number;
  label: string;
}
interface Trial {
  id: string;
  kind: string;
  scenario: Scenario;
  phase: Phase;
  /** The n-th point of the phase (from a traced dry run), or 0 with `match`. */
  n: number;
  /** Or: the `occurrence`-th point of the phase whose label matches. */
  match?: string;
  occurrence?: number;
  seed: number | null;
  planned: string;
  /** Trials of one lane run one after the other on the same device (containers). */
  lane?: number;
}
interface TrialRecord {
  id: string;
  kind: string;
  scenario: Scenario;
  seed: number | null;
  phase: Phase;
  n: number;
  point: string;
  partialBytes: number | null;
  /** The in-flight phase (or terminal state) the durable journal held when the agent died. */
  journal: string;
  /** Temp files of the state file's atomic writes left in <data-dir>/state after restart. */
  stateTempFilesAtCrash?: number;
  stateTempFiles: number;
  result: string;
  reason: string;
  live: 'old' | 'new' | 'other';
  problems: string[];
  /** Wall time of the parts of the trial. */
  ms?: Record<string, number>;
}

/**
 * Per kind, scenario and phase: how many seeded random points, or "each" (every point that is
 * not a write of the agent's own state file, plus `stateSamples` seeded ones among those).
 */
/** A count of seeded points; every non-state point ('each'); or every point matching `each` plus `sample` seeded others. */
type How = number | 'each' | { each: RegExp; sample: number };
type Plan = Record<Scenario, Partial<Record<Phase, How>>>;
const MODEL_PLAN: Plan = {
  ok: { start: 1, download: LONG ? 10 : 3, verify: LONG ? 4 : 1, apply: 'each', probe: LONG ? 6 : 2, cleanup: LONG ? 2 : 1 },
  fail: { probe: LONG ? 4 : 1, rollback: 'each', ...(LONG ? { apply: 4, download: 2 } : {}) },
};
// The swap is core's kit, shared with the model plugin (every step of it is covered there): for
// config every step of its own (the directory, the reload) and a seeded sample of the swap.
const CONFIG_PLAN: Plan = {
  ok: { start: 1, download: LONG ? 10 : 2, verify: 1, apply: LONG ? 'each' : { each: /^(hook:apply|fs\.mkdir |spawn )/, sample: 6 }, probe: LONG ? 6 : 2, cleanup: 1 },
  fail: { probe: LONG ? 4 : 1, rollback: 'each', ...(LONG ? { apply: 4, download: 2 } : {}) },
};
const STATE_SAMPLES = LONG ? 4 : 1;

const isStateWrite = (label: string) => /agent-state\.json|\/state$| state$/.test(label) || /^fs\.rm tmp\//.test(label);

let root: string;
let serverDir: string;
let certDir: string;
let server: Child;
let ctx: MeshanicsContext;
let reloadScript: string;
const records: TrialRecord[] = [];
const dryRuns: Record<string, { result: string; points: Record<string, number> }> = {};

async function publish(name: string, version: string, bytes: Buffer | string, kind = 'model', spec: Record<string, unknown> = {}) {
  const file = path.join(root, 'uploads', `${name}-${version}`);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, bytes);
  return publishArtifact(ctx, { file, name, version, kind, spec, actor: 'test:faults' });
}

let assignmentCounter = 0;
function assignmentOf(
  p: { name: string; version: string; kind: string; targetPath: string; sha256: string; length: number },
  spec: unknown,
  probe: Assignment['probe'],
): Assignment {
  assignmentCounter += 1;
  return {
    assignmentId: `crash-${process.pid}-${assignmentCounter}`,
    rolloutId: '',
    kind: p.kind,
    name: p.name,
    version: p.version,
    targetPath: p.targetPath,
    expectedSha256: p.sha256,
    expectedLength: p.length,
    specJson: JSON.stringify(spec),
    probe,
  };
}

const fileProbe = (file: string): Assignment['probe'] => ({
  type: 'file',
  specJson: JSON.stringify({ path: file }),
  timeoutSeconds: 1,
  attempts: 1,
  initialDelaySeconds: 0,
});

/** What a kind contributes to a trial: its versions, its allowlist, and how to read the device. */
interface Prepared {
  dataDir: string;
  allowlist: Record<string, string[]>;
  containerSocket?: string;
  next: Assignment;
  oldSha: string;
  newSha: string;
  /** The version the device runs now ('old'/'new' by sha or digest) and anything wrong with it. */
  inspect(): Promise<{ liveSha: string | undefined; problems: string[] }>;
  dispose?(): Promise<void>;
}
interface KindDriver {
  kind: string;
  prepare(trialDir: string, scenario: Scenario, lane: number): Promise<Prepared>;
}

async function install(prepared: { dataDir: string; allowlist: Record<string, string[]>; containerSocket?: string }, a: Assignment) {
  const device = await openDevice({ ...prepared, certDir, artifactServer: server.artifacts });
  try {
    const result = await runPipeline(device.agent, a, new AbortController().signal);
    if (result !== 'HEALTHY') {
      const last = device.agent.state.current.outbox.at(-1);
      throw new Error(`installing ${a.name}@${a.version} ended ${result}: ${last?.reason}`);
    }
  } finally {
    device.close();
  }
}

async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

// ---- model --------------------------------------------------------------------------------
let modelV1: Awaited<ReturnType<typeof publish>>;
let modelV2: Awaited<ReturnType<typeof publish>>;
const modelDriver: KindDriver = {
  kind: 'model',
  async prepare(trialDir, scenario) {
    const dataDir = path.join(trialDir, 'agent');
    const ready = path.join(trialDir, 'ready');
    await writeFile(ready, 'ok');
    const allowlist = {};
    await install({ dataDir, allowlist }, assignmentOf(modelV1, {}, fileProbe(ready)));
    const next = assignmentOf(modelV2, {}, fileProbe(scenario === 'ok' ? ready : path.join(trialDir, 'never')));
    const liveDir = path.join(dataDir, 'artifacts', 'model', modelV1.name);
    return {
      dataDir,
      allowlist,
      next,
      oldSha: modelV1.sha256,
      newSha: modelV2.sha256,
      async inspect() {
        const problems: string[] = [];
        const names = await entries(liveDir);
        const strays = names.filter((n) => n !== 'model' && n !== '.model.previous');
        if (strays.length > 0) problems.push(`stray files in the live directory: ${strays.join(', ')}`);
        const live = await readFile(path.join(liveDir, 'model')).catch(() => undefined);
        if (!live) problems.push('no live model file');
        return { liveSha: live && sha256(live), problems };
      },
    };
  },
};

// ---- config -------------------------------------------------------------------------------
let configCounter = 0;
const configDriver: KindDriver = {
  kind: 'config',
  async prepare(trialDir, scenario) {
    configCounter += 1;
    const name = `cfg-${configCounter}`;
    const dataDir = path.join(trialDir, 'agent');
    const ready = path.join(trialDir, 'ready');
    await writeFile(ready, 'ok');
    const etc = path.join(trialDir, 'etc', 'app');
    const destination = path.join(etc, 'app.conf');
    const reloads = path.join(trialDir, 'reloads.log');
    const spec = { destination, mode: '0640', reload: { exec: [reloadScript, destination, reloads] } };
    const v1 = await publish(name, '1.0.0', `# v1 of ${name}\nthreshold = 0.5\n${'x'.repeat(2000)}\n`, 'config', spec);
    const v2 = await publish(name, '2.0.0', `# v2 of ${name}\nthreshold = 0.7\n${'y'.repeat(300_000)}\n`, 'config', spec);
    const allowlist = { writePaths: [path.join(trialDir, 'etc') + '/'], execBinaries: [reloadScript] };
    await install({ dataDir, allowlist }, assignmentOf(v1, spec, fileProbe(ready)));
    const next = assignmentOf(v2, spec, fileProbe(scenario === 'ok' ? ready : path.join(trialDir, 'never')));
    return {
      dataDir,
      allowlist,
      next,
      oldSha: v1.sha256,
      newSha: v2.sha256,
      async inspect() {
        const problems: string[] = [];
        const names = await entries(etc);
        const strays = names.filter((n) => n !== 'app.conf' && n !== '.app.conf.meshanics-previous');
        if (strays.length > 0) problems.push(`stray files beside the live config: ${strays.join(', ')}`);
        const live = await readFile(destination).catch(() => undefined);
        if (!live) problems.push('no live config file');
        const liveSha = live && sha256(live);
        if (live && ((await stat(destination)).mode & 0o777) !== 0o640) problems.push('live config mode is not 0640');
        // The service must run with what is live: the last reload saw exactly these bytes.
        const lines = (await readFile(reloads, 'utf8').catch(() => '')).trim().split('\n');
        const lastReload = lines.at(-1)?.split(/\s+/)[0];
        if (lastReload !== liveSha) problems.push(`last reload saw sha256 ${lastReload?.slice(0, 12)}, live is ${liveSha?.slice(0, 12)}`);
        return { liveSha, problems };
      },
    };
  },
};

// ---- container (real runtime) ---------------------------------------------------------------
// Containers are slow to create, stop and start, so their trials run in lanes: each lane is
// one device (one data dir, one managed container, one port) that goes through its trials one
// after the other, every update starting from whatever the previous trial left live. The
// points are named by the runtime call (every engine call of apply and of rollback) rather
// than taken from a dry run. Each lane has an image store of its own, as every real device
// does: with one store shared, one lane's cleanup removed an image (`bad`, pulled by that lane)
// the other lane had found present and not yet created a container from ("no such image ...
// image not known" at create, FAILED; MESH_ERR_DIGEST_MISMATCH when it went before verify).
const runtime = await findRuntime();
const rt: RuntimeEnv | undefined = runtime.env;
interface Lane {
  dataDir: string;
  name: string;
  port: number;
  live: 'v1' | 'v2' | undefined;
  versions: number;
  store: PrivateStore;
}
const lanes = new Map<number, Lane>();
const CONTAINER_POINTS: Array<{ scenario: Scenario; phase: Phase; match: string; occurrence?: number }> = [
  // Every engine call of apply, and of the rollback after a failed probe.
  { scenario: 'ok', phase: 'apply', match: '^docker\\.createContainer' },
  { scenario: 'ok', phase: 'apply', match: '^container\\.stop' },
  { scenario: 'ok', phase: 'apply', match: '^container\\.rename', occurrence: 1 },
  { scenario: 'ok', phase: 'apply', match: '^container\\.rename', occurrence: 2 },
  { scenario: 'ok', phase: 'apply', match: '^container\\.start' },
  { scenario: 'fail', phase: 'rollback', match: '^container\\.remove' },
  { scenario: 'fail', phase: 'rollback', match: '^container\\.rename' },
  { scenario: 'fail', phase: 'rollback', match: '^container\\.start' },
  ...(LONG
    ? [
        { scenario: 'ok' as const, phase: 'download' as const, match: '^hook:download' },
        { scenario: 'ok' as const, phase: 'verify' as const, match: '^hook:verify' },
        { scenario: 'ok' as const, phase: 'apply' as const, match: 'agent-state\\.json$', occurrence: 1 },
        { scenario: 'ok' as const, phase: 'apply' as const, match: 'agent-state\\.json$', occurrence: 3 },
        { scenario: 'ok' as const, phase: 'probe' as const, match: '^hook:probe' },
        { scenario: 'fail' as const, phase: 'probe' as const, match: '^hook:probe' },
        { scenario: 'fail' as const, phase: 'rollback' as const, match: '^hook:rollback' },
        { scenario: 'fail' as const, phase: 'cleanup' as const, match: '^hook:cleanup' },
      ]
    : []),
];
const digestOf = (ref: string) => ref.slice(ref.indexOf('@') + 1);
const containerDriver: KindDriver = {
  kind: 'container',
  async prepare(_trialDir, scenario, laneIndex) {
    let lane = lanes.get(laneIndex);
    const descriptor = (l: Lane, image: string) => ({ image, name: l.name, ports: [{ container: 8080, host: l.port }], restartPolicy: 'no', stopTimeoutSeconds: 1 });
    const probe = (l: Lane, attempts: number): Assignment['probe'] => ({
      type: 'http',
      specJson: JSON.stringify({ url: `http://127.0.0.1:${l.port}/health` }),
      timeoutSeconds: 2,
      attempts,
      initialDelaySeconds: 0,
    });
    const publishVersion = async (l: Lane, image: string) => {
      l.versions += 1;
      const d = descriptor(l, image);
      return { d, p: await publish(l.name, `${l.versions}.0.0`, JSON.stringify(d), 'container', d) };
    };
    if (!lane) {
      const store = await startPrivateStore(`crash-lane-${laneIndex}`, rt!);
      lane = {
        dataDir: path.join(root, 'trials', `container-lane-${laneIndex}`, 'agent'),
        name: `mfault${process.pid % 100000}l${laneIndex}`,
        port: await freePort(),
        live: undefined,
        versions: 0,
        store,
      };
      lanes.set(laneIndex, lane);
      const first = await publishVersion(lane, rt!.images.v1.ref);
      await install({ dataDir: lane.dataDir, allowlist: {}, containerSocket: store.socketPath }, assignmentOf(first.p, first.d, probe(lane, 5)));
      lane.live = 'v1';
    }
    const l = lane;
    const docker = new Docker({ socketPath: l.store.socketPath });
    const oldImage = l.live === 'v2' ? rt!.images.v2.ref : rt!.images.v1.ref;
    const target = scenario === 'ok' ? (l.live === 'v2' ? rt!.images.v1.ref : rt!.images.v2.ref) : rt!.images.bad.ref;
    const next = await publishVersion(l, target);
    return {
      dataDir: l.dataDir,
      allowlist: {},
      containerSocket: l.store.socketPath,
      next: assignmentOf(next.p, next.d, probe(l, scenario === 'ok' ? 5 : 1)),
      // For containers the "bytes" are the image digest the running container carries.
      oldSha: digestOf(oldImage),
      newSha: digestOf(target),
      async inspect() {
        const problems: string[] = [];
        const ours = await docker.listContainers({ all: true, filters: { label: [`dev.meshanics.artifact=${l.name}`] } });
        const names = ours.map((c) => c.Names[0]!.replace(/^\//, ''));
        const live = ours.filter((c) => c.Names[0] === `/${l.name}`);
        if (live.length !== 1) problems.push(`expected one live container named ${l.name}, found: ${names.join(', ') || 'none'}`);
        if (names.some((n) => n.endsWith('.meshanics-staging'))) problems.push(`a staging container was left: ${names.join(', ')}`);
        const c = live[0];
        if (c && c.State !== 'running') problems.push(`the live container is ${c.State}`);
        const digest = c?.Labels['dev.meshanics.digest'];
        if (c && c.State === 'running') {
          // A container just (re)started needs a moment before its port answers.
          let body = '';
          for (let i = 0; i < 50; i++) {
            body = await fetch(`http://127.0.0.1:${l.port}/`, { signal: AbortSignal.timeout(3000) }).then(
              (r) => r.text(),
              (e: Error) => `error ${e.message}`,
            );
            if (!body.startsWith('error')) break;
            await new Promise((res) => setTimeout(res, 200));
          }
          const served = digest === digestOf(rt!.images.v1.ref) ? 'meshanics-test v1\n' : digest === digestOf(rt!.images.v2.ref) ? 'meshanics-test v2\n' : undefined;
          if (served && body !== served) problems.push(`the live container serves ${JSON.stringify(body)}, its digest says ${JSON.stringify(served)}`);
        }
        // The next trial of this lane starts from what is live now.
        l.live = digest === digestOf(rt!.images.v2.ref) ? 'v2' : 'v1';
        return { liveSha: digest, problems };
      },
    };
  },
};

/** Every lane's store goes, with its containers and images. */
async function stopLaneStores(): Promise<void> {
  for (const lane of lanes.values()) await lane.store.stop();
}

// ---- the trial ------------------------------------------------------------------------------
/** What the pipeline ends in without a crash. */
const natural = (scenario: Scenario) => (scenario === 'ok' ? 'HEALTHY' : 'ROLLED_BACK');

async function runTrial(driver: KindDriver, trial: Trial): Promise<TrialRecord> {
  const trialDir = path.join(root, 'trials', trial.id);
  await mkdir(trialDir, { recursive: true });
  const t0 = Date.now();
  const prepared = await driver.prepare(trialDir, trial.scenario, trial.lane ?? 0);
  const { dataDir, next } = prepared;
  const ms: Record<string, number> = { prepare: Date.now() - t0 };
  try {
    const crashLog = path.join(trialDir, 'crash.json');
    const child = await runNode(
      CHILD,
      [
        JSON.stringify({
          dataDir,
          certDir,
          artifactServer: server.artifacts,
          allowlist: prepared.allowlist,
          containerSocket: prepared.containerSocket,
          assignment: next,
          inject: { phase: trial.phase, ...(trial.match ? { match: trial.match, occurrence: trial.occurrence ?? 1 } : { n: trial.n }), crashLog },
        }),
      ],
      { timeoutMs: 90_000 },
    );
    ms.child = Date.now() - t0 - ms.prepare!;
    const problems: string[] = [];
    let point = '(not reached)';
    if (child.signal !== 'SIGKILL') {
      problems.push(
        `the agent was not killed at ${trial.phase}#${trial.n || trial.match}: exit ${child.code} ${child.signal ?? ''} ${child.stdout.trim()} ${child.stderr.slice(-500)}`,
      );
    } else {
      point = (JSON.parse(await readFile(crashLog, 'utf8')) as TracePoint).label;
    }
    const staged = path.join(dataDir, 'staging', next.assignmentId, 'target');
    const partialBytes = await stat(staged).then(
      (s) => s.size,
      () => null,
    );
    // What the durable journal said at the moment of death decides what recovery must do.
    const atCrash = JSON.parse(await readFile(path.join(dataDir, 'state', 'agent-state.json'), 'utf8'));
    const journal: string =
      atCrash.inflight[next.name]?.assignment.assignmentId === next.assignmentId
        ? atCrash.inflight[next.name].phase
        : (atCrash.completed[next.assignmentId]?.state ?? 'not started');
    // Temp files of the state file's own atomic writes that the crash left behind.
    const stateTempFilesAtCrash = (await entries(path.join(dataDir, 'state'))).filter((n) => n !== 'agent-state.json').length;

    // The restarted agent: recovery first, then the assignment again if it is not finished.
    const device = await openDevice({ ...prepared, certDir, artifactServer: server.artifacts });
    try {
      await recoverInterrupted(device.agent);
      if (!device.agent.state.current.completed[next.assignmentId]) {
        await runPipeline(device.agent, next, new AbortController().signal);
      }
    } finally {
      device.close();
    }

    ms.restart = Date.now() - t0 - ms.prepare! - ms.child;
    // The durable truth is the state file on disk.
    const state = JSON.parse(await readFile(path.join(dataDir, 'state', 'agent-state.json'), 'utf8'));
    const completed = state.completed[next.assignmentId];
    if (state.inflight[next.name]) problems.push(`still in flight: ${state.inflight[next.name].phase}`);
    if (!completed || !TERMINAL.has(completed.state)) problems.push(`no terminal state recorded: ${JSON.stringify(completed)}`);
    const seqs: number[] = state.outbox.map((r: { sequence: number }) => r.sequence);
    if (seqs.some((s, i) => i > 0 && s <= seqs[i - 1]!)) problems.push(`outbox sequences not strictly increasing: ${seqs.join(',')}`);
    if (seqs.length > 0 && state.nextSequence <= seqs.at(-1)!) problems.push('nextSequence does not exceed the last queued sequence');
    const mine = state.outbox.filter((r: { assignmentId: string }) => r.assignmentId === next.assignmentId);
    const terminals = mine.filter((r: { state: string }) => TERMINAL.has(r.state));
    if (terminals.length !== 1) problems.push(`${terminals.length} terminal reports queued for the assignment`);
    if (mine.at(-1)?.state !== completed?.state) problems.push(`the last queued report (${mine.at(-1)?.state}) is not the final state (${completed?.state})`);
    const reason: string = terminals.at(-1)?.reason ?? '';
    if (
      await stat(path.join(dataDir, 'staging', next.assignmentId)).then(
        () => true,
        () => false,
      )
    )
      problems.push('staging directory left behind');

    // The restarted agent removed the temp files of interrupted state writes (AgentStateStore.open).
    const stateTempFiles = (await entries(path.join(dataDir, 'state'))).filter((n) => n !== 'agent-state.json').length;
    if (stateTempFiles > 0) problems.push(`${stateTempFiles} temp file(s) of the state file left in <data-dir>/state after the restart`);
    const { liveSha, problems: deviceProblems } = await prepared.inspect();
    problems.push(...deviceProblems);
    const live = liveSha === prepared.oldSha ? 'old' : liveSha === prepared.newSha ? 'new' : 'other';
    if (live === 'other') problems.push(`live version is neither the old nor the new one (${liveSha})`);
    const installed = state.installed[next.name];
    const installedSha = next.kind === 'container' ? installed?.pluginState?.image?.digest : installed?.sha256;
    if (installedSha !== liveSha) problems.push(`installed record (${installedSha?.slice(0, 19)}) does not name the live version (${liveSha?.slice(0, 19)})`);
    if (completed?.state === 'HEALTHY' && live !== 'new') problems.push('HEALTHY but the old version is live');
    if (completed && completed.state !== 'HEALTHY' && live !== 'old') problems.push(`${completed.state} but the new version is live`);

    // What each crash must end in, from the journal at the moment of death: before the swap
    // (not started, downloading, verifying) the update resumes to its natural end; from
    // applying on it is rolled back; a terminal state already persisted stays.
    const result: string = completed?.state ?? 'none';
    const expected = ['not started', 'downloading', 'verifying'].includes(journal)
      ? natural(trial.scenario)
      : ['applying', 'probing', 'rolling_back'].includes(journal)
        ? 'ROLLED_BACK'
        : journal;
    if (result !== expected) problems.push(`journal said "${journal}" at the crash: expected ${expected}, got ${result}`);
    if (result === 'ROLLED_BACK' && ['applying', 'probing', 'rolling_back'].includes(journal) && !reason.includes(`agent restarted during ${journal}`)) {
      problems.push(`the reason does not say what was interrupted: ${reason}`);
    }
    // And the journal is where the phase of the point says it is.
    const journalOk: Record<Phase, string[]> = {
      start: ['not started', 'downloading'],
      download: ['downloading', 'verifying'],
      verify: ['verifying', 'applying'],
      apply: ['applying', 'probing'],
      probe: ['probing', 'rolling_back', 'HEALTHY', 'ROLLED_BACK'],
      // A rollback also follows a failed apply, with the journal still at applying.
      rollback: ['rolling_back', 'applying', 'ROLLED_BACK'],
      cleanup: ['HEALTHY', 'ROLLED_BACK', 'FAILED'],
    };
    if (child.signal === 'SIGKILL' && !journalOk[trial.phase].includes(journal)) problems.push(`a crash in phase ${trial.phase} found the journal at "${journal}"`);
    return {
      id: trial.id,
      kind: trial.kind,
      scenario: trial.scenario,
      seed: trial.seed,
      phase: trial.phase,
      n: trial.n,
      point,
      partialBytes,
      journal,
      stateTempFilesAtCrash,
      stateTempFiles,
      result,
      reason,
      live,
      problems,
      ms,
    };
  } finally {
    await prepared.dispose?.();
  }
}

/** A traced run without a crash: the points of every phase, and the outcome to expect. */
async function dryRun(driver: KindDriver, scenario: Scenario): Promise<TracePoint[]> {
  const trialDir = path.join(root, 'trials', `${driver.kind}-dry-${scenario}`);
  await mkdir(trialDir, { recursive: true });
  const prepared = await driver.prepare(trialDir, scenario, 0);
  try {
    const trace = path.join(trialDir, 'trace.ndjson');
    const child = await runNode(
      CHILD,
      [
        JSON.stringify({
          dataDir: prepared.dataDir,
          certDir,
          artifactServer: server.artifacts,
          allowlist: prepared.allowlist,
          containerSocket: prepared.containerSocket,
          assignment: prepared.next,
          inject: { trace },
        }),
      ],
      { timeoutMs: 90_000 },
    );
    expect(child.stdout.trim(), child.stderr).toBe(natural(scenario));
    const points = readTrace(trace) as TracePoint[];
    const counts: Record<string, number> = {};
    for (const p of points) counts[p.phase] = (counts[p.phase] ?? 0) + 1;
    dryRuns[`${driver.kind}/${scenario}`] = { result: child.stdout.trim(), points: counts };
    return points;
  } finally {
    await prepared.dispose?.();
  }
}

let trialCounter = 0;
/** The trials of one kind and scenario, from its dry-run trace and the plan. */
function planTrials(kind: string, scenario: Scenario, points: TracePoint[], plan: Plan, stateSamples: number): Trial[] {
  const trials: Trial[] = [];
  const add = (phase: Phase, n: number, seed: number | null, planned: string) => {
    trialCounter += 1;
    trials.push({ id: `${kind}-${scenario}-${phase}-${n}-${trialCounter}`, kind, scenario, phase, n, seed, planned });
  };
  for (const [phase, how] of Object.entries(plan[scenario]) as [Phase, How][]) {
    const inPhase = points.filter((p) => p.phase === phase);
    if (inPhase.length === 0) continue;
    if (typeof how === 'object') {
      const own = inPhase.filter((q) => how.each.test(q.label));
      for (const p of own) add(phase, p.n, null, p.label);
      const rest = inPhase.filter((q) => !how.each.test(q.label));
      const picked = new Set<number>();
      for (let i = 0; i < Math.min(how.sample, rest.length); i++) {
        let seed = SEED + trialCounter * 7919;
        let k = pickPoint(seed, rest.length) - 1;
        while (picked.has(k)) k = pickPoint(++seed, rest.length) - 1;
        picked.add(k);
        add(phase, rest[k]!.n, seed, rest[k]!.label);
      }
    } else if (how === 'each') {
      for (const p of inPhase.filter((q) => !isStateWrite(q.label))) add(phase, p.n, null, p.label);
      const stateWrites = inPhase.filter((q) => isStateWrite(q.label));
      const samples = LONG ? stateWrites.length : Math.min(stateSamples, stateWrites.length);
      for (let i = 0; i < samples; i++) {
        const seed = SEED + trialCounter * 7919;
        const p = LONG ? stateWrites[i]! : stateWrites[pickPoint(seed, stateWrites.length) - 1]!;
        add(phase, p.n, LONG ? null : seed, p.label);
      }
    } else {
      // The number of download operations varies between runs (TLS records coalesce into
      // 1 MiB batches as they happen to arrive; state writes coalesce when they overlap): a
      // point late in the dry run's download was not reached in a CI run (download#25 of
      // ~28). Points are drawn from the first 60%, which every run reaches.
      const max = phase === 'download' ? Math.max(1, Math.floor(inPhase.length * 0.6)) : inPhase.length;
      for (let i = 0; i < how; i++) {
        const seed = SEED + trialCounter * 7919;
        const n = pickPoint(seed, max);
        add(phase, n, seed, inPhase.find((p) => p.n === n)?.label ?? '?');
      }
    }
  }
  return trials;
}

async function runKind(driver: KindDriver, plan: Plan, stateSamples: number): Promise<TrialRecord[]> {
  const trials: Trial[] = [];
  for (const scenario of ['ok', 'fail'] as const) {
    trials.push(...planTrials(driver.kind, scenario, await dryRun(driver, scenario), plan, stateSamples));
  }
  const results = await pool(trials, CONCURRENCY, (t) => runTrial(driver, t));
  records.push(...results);
  return results;
}

/** Container trials: no dry run (points by runtime call), lanes of chained trials. */
async function runContainerTrials(): Promise<TrialRecord[]> {
  const trials: Trial[] = CONTAINER_POINTS.map((p, i) => ({
    id: `container-${p.scenario}-${p.phase}-${i}`,
    kind: 'container',
    scenario: p.scenario,
    phase: p.phase,
    n: 0,
    match: p.match,
    occurrence: p.occurrence ?? 1,
    seed: null,
    planned: `${p.match} #${p.occurrence ?? 1}`,
    lane: i % CONTAINER_LANES,
  }));
  // Last on lane 0: the crash while cleanup removes the backup container after HEALTHY. The
  // test after this one updates that device once more, cleanly.
  trials.push({
    id: 'container-ok-cleanup-backup',
    kind: 'container',
    scenario: 'ok',
    phase: 'cleanup',
    n: 0,
    match: '^container\\.remove',
    occurrence: 1,
    seed: null,
    planned: 'removing the backup container after HEALTHY',
    lane: 0,
  });
  const byLane = Array.from({ length: CONTAINER_LANES }, (_, lane) => trials.filter((t) => t.lane === lane));
  const results = (
    await Promise.all(
      byLane.map(async (laneTrials) => {
        const out: TrialRecord[] = [];
        for (const t of laneTrials) out.push(await runTrial(containerDriver, t));
        return out;
      }),
    )
  ).flat();
  records.push(...results);
  return results;
}

function summarize(results: TrialRecord[]): string {
  return results
    .map(
      (r) =>
        `${r.problems.length ? 'FAIL' : 'ok  '} ${r.kind}/${r.scenario} ${r.phase}#${r.n} seed=${r.seed ?? '-'} at "${r.point}" [journal: ${r.journal}] -> ${r.result} (${r.live}) ${JSON.stringify(r.ms ?? {})}${r.problems.length ? `: ${r.problems.join('; ')}` : ''}`,
    )
    .join('\n');
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-crash-'));
  serverDir = path.join(root, 'server');
  certDir = path.join(root, 'creds');
  server = await startServer(serverDir);
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'faults', '--name', 'crash-device', '--out', certDir]);
  ctx = await openDataDir({ dataDir: serverDir });
  modelV1 = await publish('detector', '1.0.0', randomBytes(64 * 1024));
  // Large enough for the download to take several writes (the agent writes 1 MiB batches):
  // several points to die at mid-download.
  modelV2 = await publish('detector', '2.0.0', randomBytes(4 * 1024 * 1024));
  reloadScript = path.join(root, 'bin', 'reload-app');
  await mkdir(path.dirname(reloadScript), { recursive: true });
  // The "service reload": records which bytes the service now runs with.
  await writeFile(reloadScript, '#!/bin/sh\nsha256sum "$1" >> "$2"\n');
  await chmod(reloadScript, 0o755);
}, 60_000);

afterAll(async () => {
  recordResults('crash-injection', { dryRuns, trials: records });
  await stopLaneStores().catch(() => undefined);
  await ctx?.close();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('crash injection (SIGKILL at seeded points of the pipeline)', () => {
  it(
    'model artifact: after every crash and restart the device runs exactly v1 or v2, and the outcome is recorded once',
    async () => {
      const results = await runKind(modelDriver, MODEL_PLAN, STATE_SAMPLES);
      console.log(`[faults] crash injection, model (seed ${SEED}):\n${summarize(results)}`);
      expect(results.length).toBeGreaterThanOrEqual(26);
      expect(
        results.filter((r) => r.problems.length > 0),
        summarize(results),
      ).toEqual([]);
      // Spread: every phase was hit.
      expect(new Set(results.map((r) => r.phase))).toEqual(new Set(['start', 'download', 'verify', 'apply', 'probe', 'rollback', 'cleanup']));
      // A crash mid-download resumes from the bytes on disk instead of starting over.
      expect(results.some((r) => r.phase === 'download' && (r.partialBytes ?? 0) > 0 && r.result === 'HEALTHY')).toBe(true);
    },
    LONG ? 1_800_000 : 300_000,
  );

  it(
    'config artifact with an allowlisted reload: the same, and the service was last reloaded with the live bytes',
    async () => {
      const results = await runKind(configDriver, CONFIG_PLAN, STATE_SAMPLES);
      console.log(`[faults] crash injection, config (seed ${SEED}):\n${summarize(results)}`);
      expect(results.length).toBeGreaterThanOrEqual(24);
      expect(
        results.filter((r) => r.problems.length > 0),
        summarize(results),
      ).toEqual([]);
      expect(results.some((r) => r.point.startsWith('spawn '))).toBe(true);
    },
    LONG ? 1_800_000 : 300_000,
  );

  if (!rt) {
    if (IN_CI) {
      it('container artifact: the runtime is available (required in CI)', () => {
        throw new Error(`CI=true but the container runtime is missing: ${runtime.missing}`);
      });
    } else {
      console.warn(`[faults] container crash trials skipped: ${runtime.missing}`);
    }
  }
  it.skipIf(!rt)(
    'container artifact (real podman runtime): the live container runs the old or the new digest and serves that version',
    async () => {
      const results = await runContainerTrials();
      console.log(`[faults] crash injection, container (seed ${SEED}):\n${summarize(results)}`);
      expect(
        results.filter((r) => r.problems.length > 0),
        summarize(results),
      ).toEqual([]);
      // Every engine call of apply and of rollback was a point of death.
      for (const step of ['docker.createContainer', 'container.stop', 'container.rename', 'container.start', 'container.remove']) {
        expect(
          results.some((r) => r.point.startsWith(step)),
          step,
        ).toBe(true);
      }
    },
    LONG ? 3_600_000 : 300_000,
  );

  // Was a bug (plugins/artifact-container/src/engine.ts, nameOf; used by prepare in
  // plugins/artifact-container/src/container-swap.ts): podman's Docker-compatible list endpoint
  // (GET /containers/json, podman 4.3.1 here) returns `"Name": ""` next to `"Names": ["/x"]`,
  // and `nameOf` took `info.Name ?? info.Names[0]`, so every listed container was named "".
  // `prepare` then counted a backup (`x.meshanics-previous`) or a staging container as a
  // second live one: after the agent died while cleanup was removing the backup (the trial
  // above), EVERY later update of that artifact failed ("several live containers are managed
  // for artifact …"). Fixed with `info.Name || info.Names?.[0] || ''`.
  it.skipIf(!rt)(
    'container artifact: after a crash while the backup container was being removed, the next update still applies',
    async () => {
      const lane = lanes.get(0);
      expect(lane, 'the container crash trials did not run').toBeDefined();
      const next = await containerDriver.prepare(path.join(root, 'trials', 'container-after-backup-crash'), 'ok', 0);
      const device = await openDevice({ dataDir: next.dataDir, allowlist: next.allowlist, containerSocket: next.containerSocket, certDir, artifactServer: server.artifacts });
      try {
        const state = await runPipeline(device.agent, next.next, new AbortController().signal);
        const reason = device.agent.state.current.outbox.at(-1)?.reason;
        records.push({
          id: 'container-after-backup-crash',
          kind: 'container',
          scenario: 'ok',
          seed: null,
          phase: 'cleanup',
          n: 0,
          point: '(none: a clean update after the crash above)',
          partialBytes: null,
          journal: '-',
          stateTempFiles: 0,
          result: state,
          reason: reason ?? '',
          live: '-' as never,
          problems: state === 'HEALTHY' ? [] : [`next update ${state}: ${reason}`],
        });
        expect(state, reason).toBe('HEALTHY');
      } finally {
        device.close();
      }
    },
    120_000,
  );
});
