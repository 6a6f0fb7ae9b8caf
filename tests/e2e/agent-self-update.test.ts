// The agent updates itself (issue 28), end to end with real processes: a real server, real
// agents started from an installed package tree, real TUF-verified downloads, real exits and
// real kill -9.
//
// The agent package is a minimal one built from this checkout with the top-level layout of
// `npm run package`'s tarball (plugins/artifact-agent/tests/helpers/agent-tarball.ts says how it
// differs: bin/node is the machine's node, third-party modules resolve from the checkout).
// systemd is not available here, so a small supervisor below stands in for the package's unit:
// it runs <root>/current/bin/meshanics-agent, runs the unit's ExecStopPost= check (the previous
// version's watchdog.js --once with the exit status) after every exit, and starts `current`
// again 300 ms after any exit but 0 (Restart=on-failure, RestartSec=).
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRunArgs, serverCli, startServer, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { REPO, buildAgentTarball, writeAgentTree, type AgentVariant } from '../../plugins/artifact-agent/tests/helpers/agent-tarball.js';

const run = promisify(execFile);
const A = '0.1.0';
const FLEET = 'selfupdate';
let work: string;
let serverDir: string;
let server: Child;
let api: string;
let apiKey: string;
const supervisors: Supervisor[] = [];

interface Start {
  version: string;
  proc: ChildProcess;
  startedAt: number;
  exit?: { code: number | null; signal: string | null };
}

/** Stand-in for systemd's Restart=on-failure: (re)starts `current` after any exit but 0. */
class Supervisor {
  readonly starts: Start[] = [];
  readonly lines: Array<{ version: string; line: unknown }> = [];
  #stopped = false;
  constructor(
    readonly lib: string,
    readonly dataDir: string,
    readonly args: string[],
    readonly env: Record<string, string> = {},
  ) {}

  /** The unit's ExecStopPost=-<root>/previous/bin/node .../watchdog.js --once DATA_DIR $EXIT_STATUS ("-": a failure is ignored). */
  async #execStopPost(status: string): Promise<void> {
    const previous = path.join(this.lib, 'previous');
    const script = path.join(previous, 'node_modules/@meshanics/artifact-agent/dist/watchdog.js');
    await run(path.join(previous, 'bin', 'node'), [script, '--once', this.dataDir, status]).catch(() => undefined);
  }

  async start(): Promise<void> {
    if (this.#stopped) return;
    const version = path.basename((await readlink(path.join(this.lib, 'current'))) ?? '');
    const proc = spawn(path.join(this.lib, 'current', 'bin', 'meshanics-agent'), this.args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.env },
    });
    const start: Start = { version, proc, startedAt: Date.now() };
    this.starts.push(start);
    for (const stream of [proc.stdout, proc.stderr]) {
      readline.createInterface({ input: stream }).on('line', (l) => {
        let line: unknown = l;
        try {
          line = JSON.parse(l);
        } catch {
          // not a JSON log line: kept as text
        }
        this.lines.push({ version, line });
        if (process.env.MESHANICS_E2E_VERBOSE) process.stderr.write(`[agent ${version}] ${l}\n`);
      });
    }
    proc.on('exit', (code, signal) => {
      start.exit = { code, signal };
      if (this.#stopped || code === 0) return;
      void this.#execStopPost(String(code ?? signal)).then(() => setTimeout(() => void this.start(), 300));
    });
  }

  get current(): Start {
    return this.starts.at(-1)!;
  }

  /** Resolves when a line of an agent of `version` (any, if omitted) satisfies `predicate`. */
  async waitFor(predicate: (line: any) => boolean, version?: string, timeoutMs = 30_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.lines.some((l) => (!version || l.version === version) && predicate(l.line))) {
      if (Date.now() > until)
        throw new Error(
          `no matching line from agent ${version ?? '*'}; last:\n${this.lines
            .slice(-15)
            .map((l) => JSON.stringify(l))
            .join('\n')}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const s = this.current;
    if (s && !s.exit) {
      s.proc.kill('SIGTERM');
      await new Promise((r) => s.proc.once('exit', r));
    }
  }
}

async function call(urlPath: string): Promise<any> {
  const res = await fetch(api + urlPath, { headers: { authorization: `Bearer ${apiKey}` } });
  return res.json();
}

async function publish(version: string, variant: AgentVariant, healthDeadlineSeconds: number, architecture: string = process.arch): Promise<void> {
  const file = path.join(work, `meshanics-agent-${version}-linux-${architecture}.tar.gz`);
  await buildAgentTarball({ version, out: file, variant });
  await serverCli(serverDir, [
    'artifact',
    'publish',
    file,
    '--name',
    'meshanics-agent',
    '--version',
    version,
    '--kind',
    'agent',
    '--spec',
    JSON.stringify({ architecture, healthDeadlineSeconds }),
  ]);
}

/** A device on agent A, installed from the package tree, running under the supervisor. */
async function device(name: string, env: Record<string, string> = {}): Promise<{ sup: Supervisor; lib: string; dataDir: string }> {
  const creds = path.join(work, 'creds', name);
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', FLEET, '--name', name, '--out', creds]);
  const lib = await writeAgentTree(path.join(work, 'devices', name), { version: A });
  const dataDir = path.join(work, 'data', name);
  await mkdir(dataDir, { recursive: true });
  // The assignments' exec probe must be on the device's allowlist (refused at validation otherwise).
  // Not in work/: the loader looks for plugins in the config file's folder's node_modules, and
  // work/node_modules is the checkout's (the device must load the plugins of its own tree).
  const config = path.join(dataDir, 'agent.json');
  await writeFile(config, JSON.stringify({ allowlist: { execBinaries: ['/bin/true'] } }));
  const sup = new Supervisor(lib, dataDir, [...agentRunArgs(server, creds, dataDir), '--config', config, '--plugins', '@meshanics/artifact-agent,@meshanics/probe-exec'], env);
  supervisors.push(sup);
  await sup.start();
  await sup.waitFor((l) => l?.msg === 'registered', A);
  return { sup, lib, dataDir };
}

async function assign(name: string, version: string): Promise<string> {
  const res = await serverCli(serverDir, [
    'assign',
    '--fleet',
    FLEET,
    '--device',
    name,
    '--artifact',
    `meshanics-agent@${version}`,
    '--probe-type',
    'exec',
    '--probe-spec',
    JSON.stringify({ argv: ['/bin/true'] }),
  ]);
  return res.assignmentId;
}

/** The version `--version` prints (its first line's version token: the package build adds core API and Node lines). */
const versionOf = async (lib: string, link = 'current') => {
  const first = (await run(path.join(lib, link, 'bin', 'meshanics-agent'), ['--version'])).stdout.split('\n')[0]!;
  return first.split(/\s+/).find((t) => /^\d+\.\d+\.\d+/.test(t));
};

/** The device is on exactly one version: `current`'s, and the one agent running is that version. */
async function expectOneVersion(sup: Supervisor, lib: string): Promise<string> {
  const current = path.basename(await readlink(path.join(lib, 'current')));
  await sup.waitFor((l) => l?.msg === 'registered', current, 30_000);
  // A 'registered' line may be from a start that was killed since; the supervisor restarts it
  // (300 ms), so settle on the running set rather than read it once.
  const liveVersions = () => sup.starts.filter((s) => !s.exit).map((s) => s.version);
  for (const until = Date.now() + 10_000; Date.now() < until && JSON.stringify(liveVersions()) !== JSON.stringify([current]);) {
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(liveVersions()).toEqual([current]);
  expect((await readdir(path.join(lib, 'versions'))).length).toBeLessThanOrEqual(2);
  return current;
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'meshanics-selfupdate-'));
  // The package trees under work/ resolve their third-party modules from here (see the header).
  await symlink(path.join(REPO, 'node_modules'), path.join(work, 'node_modules'));
  serverDir = path.join(work, 'server');
  await serverCli(serverDir, ['init']);
  server = await startServer(serverDir, { extraArgs: ['--api-listen', '127.0.0.1:0'] });
  api = server.api;
  apiKey = (await serverCli(serverDir, ['apikey', 'create', '--name', 'e2e', '--fleet', '*', '--permissions', 'devices.manage'])).key;
  // The spec's default: a B that is killed while it starts (and restarted by the supervisor)
  // starts node twice before its first heartbeat, which a loaded CI machine has taken over 20 s for.
  await publish('0.2.0', 'good', 60);
  // 10 s: B must have started and exited at least once before the deadline for its exit code to
  // be in the reason; a loaded CI machine took over 4 s to start node once.
  await publish('0.2.1', 'exits-at-start', 10);
  await publish('0.2.2', 'never-heartbeats', 4);
}, 120_000);

afterAll(async () => {
  await Promise.all(supervisors.map((s) => s.stop()));
  await server?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('the agent updates itself', () => {
  it('updates from A to B: HEALTHY only after B registered and heartbeated, --version says B, heartbeats go on', async () => {
    const { sup, lib } = await device('good');
    const id = await assign('good', '0.2.0');
    const view = await waitForAssignment(serverDir, id, { timeoutMs: 90_000 });
    expect(view.state, JSON.stringify(view.reports.at(-1))).toBe('HEALTHY');
    expect(view.reports.at(-1).reason).toMatch(/agent 0\.2\.0 registered and heartbeated .* after the hand-over from 0\.1\.0/);
    expect(sup.starts.map((s) => s.version)).toEqual([A, '0.2.0']);
    expect(sup.starts[0]!.exit?.code).toBe(75);
    expect(await versionOf(lib)).toBe('0.2.0');
    expect(await readlink(path.join(lib, 'previous'))).toBe(`versions/${A}`);
    const before = await call(`/api/v1/devices/${FLEET}/good`);
    expect(before.agentVersion).toBe('0.2.0');
    await new Promise((r) => setTimeout(r, 2500));
    const after = await call(`/api/v1/devices/${FLEET}/good`);
    expect(Date.parse(after.lastSeenAt)).toBeGreaterThan(Date.parse(before.lastSeenAt));
    expect(after.installed).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'meshanics-agent', version: '0.2.0' })]));
    expect(await expectOneVersion(sup, lib)).toBe('0.2.0');
  }, 120_000);

  for (const [version, variant, deadlineSeconds] of [
    ['0.2.1', 'exits at start', 10],
    ['0.2.2', 'starts but never heartbeats', 4],
  ] as const) {
    it(`rolls back a B that ${variant}: ROLLED_BACK with the reason, A runs again within the deadline + 10 s, reports in order`, async () => {
      const name = `broken-${version.replace(/\./g, '-')}`;
      const { sup, lib } = await device(name);
      const id = await assign(name, version);
      const view = await waitForAssignment(serverDir, id, { timeoutMs: 60_000 });
      expect(view.state).toBe('ROLLED_BACK');
      expect(view.reports.at(-1).reason).toContain(`MESH_ERR_AGENT_HANDOVER: agent ${version} did not register and heartbeat within ${deadlineSeconds} s`);
      // Its exit status, as the unit's ExecStopPost saw it, is in the reason.
      if (version === '0.2.1') expect(view.reports.at(-1).reason).toMatch(/exit codes of \d+ start\(s\) of the new agent: 1(, 1)*;/);
      const states = view.reports.map((r: { state: string }) => r.state);
      expect(states.filter((s: string) => s !== 'DOWNLOADING')).toEqual(['VERIFYING', 'APPLYING', 'ROLLED_BACK']);
      const sequences = view.reports.map((r: { sequence: number }) => r.sequence);
      expect(sequences).toEqual([...sequences].sort((x: number, y: number) => x - y));
      // A again: the first start after the hand-over that is A's, within deadline + 10 s.
      const handOver = sup.starts.find((s) => s.version === version)!.startedAt;
      const back = sup.starts.find((s) => s.version === A && s.startedAt > handOver)!;
      expect(back).toBeDefined();
      expect(back.startedAt - handOver).toBeLessThan(deadlineSeconds * 1000 + 10_000);
      expect(await versionOf(lib)).toBe(A);
      expect(await readdir(path.join(lib, 'versions'))).toEqual([A]);
      expect(await expectOneVersion(sup, lib)).toBe(A);
    }, 90_000);
  }

  // after-install: B is in versions/ but no marker yet (the in-flight journal says applying:
  // recovery runs the plugin's rollback hook); before-switch: the marker owns the assignment.
  for (const point of ['after-install', 'before-switch', 'after-switch', 'while-b-starts'] as const) {
    it(`kill -9 ${point.replace(/-/g, ' ')}: one version current, the assignment ends HEALTHY or ROLLED_BACK`, async () => {
      const name = `kill-${point}`;
      const env: Record<string, string> = point === 'while-b-starts' ? {} : { MESHANICS_TEST_SELF_UPDATE_KILL: point };
      const { sup, lib } = await device(name, env);
      const id = await assign(name, '0.2.0');
      if (point === 'while-b-starts') {
        await sup.waitFor((l) => l?.msg === 'agent starting', '0.2.0');
        const b = sup.starts.find((s) => s.version === '0.2.0')!;
        b.proc.kill('SIGKILL');
      }
      const view = await waitForAssignment(serverDir, id, { timeoutMs: 90_000 });
      // The reports name the reason when this fails (it ended FAILED once in five full runs).
      expect(['HEALTHY', 'ROLLED_BACK'], JSON.stringify(view.reports)).toContain(view.state);
      // Before the switch A comes back and rolls back; after it B (restarted if killed) confirms in time.
      const rolledBack = point === 'after-install' || point === 'before-switch';
      expect(view.state).toBe(rolledBack ? 'ROLLED_BACK' : 'HEALTHY');
      if (rolledBack) expect(await readdir(path.join(lib, 'versions'))).toEqual([A]);
      if (point !== 'while-b-starts') expect(sup.starts[0]!.exit?.signal).toBe('SIGKILL');
      const current = await expectOneVersion(sup, lib);
      expect(current).toBe(view.state === 'HEALTHY' ? '0.2.0' : A);
      expect(await versionOf(lib)).toBe(current);
      // Each terminal report exactly once.
      expect(view.reports.filter((r: { state: string }) => r.state === view.state)).toHaveLength(1);
    }, 120_000);
  }

  it('the server refuses a package whose version is not the artifact version, and one for another architecture', async () => {
    const file = path.join(work, 'mislabelled.tar.gz');
    await buildAgentTarball({ version: '0.3.0', out: file });
    const refused = await serverCli(serverDir, [
      'artifact',
      'publish',
      file,
      '--name',
      'meshanics-agent',
      '--version',
      '0.3.1',
      '--kind',
      'agent',
      '--spec',
      JSON.stringify({ architecture: process.arch }),
    ]).then(
      () => '',
      (e: Error) => e.message,
    );
    expect(refused).toContain('MESH_ERR_ARTIFACT_PACKAGE_MISMATCH');
    expect(refused).toContain('the agent package is version 0.3.0 (directory versions/0.3.0) but the artifact version is 0.3.1');
    const other = process.arch === 'arm64' ? 'x64' : 'arm64';
    await publish('0.4.0', 'good', 20, other);
    const wrong = await assign('good', '0.4.0').then(
      () => '',
      (e: Error) => e.message,
    );
    expect(wrong).toContain('MESH_ERR_DEVICE_ARCHITECTURE_MISMATCH');
    expect(wrong).toContain(`agent package meshanics-agent@0.4.0 is for ${other} but device(s) good (${process.arch}) run on another architecture`);
    await serverCli(serverDir, ['group', 'create', '--fleet', FLEET, '--name', 'canary', '--devices', 'good']);
    const rollout = await serverCli(serverDir, [
      'rollout',
      'create',
      '--fleet',
      FLEET,
      '--artifact',
      'meshanics-agent@0.4.0',
      '--group',
      'canary',
      '--probe-type',
      'exec',
      '--probe-spec',
      JSON.stringify({ argv: ['/bin/true'] }),
    ]).then(
      () => '',
      (e: Error) => e.message,
    );
    expect(rollout).toContain('MESH_ERR_DEVICE_ARCHITECTURE_MISMATCH');
  }, 60_000);
});
