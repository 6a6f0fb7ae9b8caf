// The amd64 .deb under a real systemd as PID 1 (issues 24 and 28): a minimal Debian bookworm
// root booted in a podman container (helpers/booted-root.ts) on the host network, against a
// real meshanics-server from this checkout. What deb-install.test.ts cannot show without a
// running service manager:
//   - the maintainer scripts enable the unit; it starts, runs as `meshanics`, enrolls and takes
//     a model update; `dpkg -r` stops it (no process left, unit gone), `--purge` leaves nothing;
//   - an agent.json that does not validate: exit 2, and RestartPreventExitStatus= holds;
//   - the agent updates itself under the unit's Restart= and its ExecStartPre=/ExecStopPost=
//     watchdog hooks, with KillMode=control-group (the default) ending A's own watchdog: a
//     healthy B, a B that exits 1 (rolled back), and a B that hangs before any of core runs
//     (rolled back only because the watchdog runs inside B's start; see watchdog.ts).
// The B packages are A's real tarball with another version string (and, for the broken ones,
// another agent-cli.js), so each carries the real Node.js 24 and the real watchdog.
import { X509Certificate } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverCli, startServer, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { publishModel } from '../e2e/helpers/steps.js';
import { BootedRoot } from './helpers/booted-root.js';
import { leftovers, snapshot } from './helpers/leftovers.js';
import { artifact, ensurePackages, missingTools, OUT, type Manifest } from './helpers/tools.js';

const run = promisify(execFile);
const skip = missingTools(['mmdebstrap', 'podman', 'runc', 'dpkg-deb', 'strip', 'aarch64-linux-gnu-strip']);
const FLEET = 'pkgsd';
const DEVICE = 'edge-systemd';
const LIB = '/usr/lib/meshanics-agent';
// Readable by the service under ProtectSystem=strict (read-only, not hidden); /tmp would be its PrivateTmp.
const READY = '/srv/meshanics-ready';
/** The broken and the good B, newer than A (0.1.0+g<sha>) by semver; deadlines in seconds. */
const B = {
  exits: { version: '0.2.1', variant: 'exits-at-start', deadline: 12 },
  hangs: { version: '0.2.2', variant: 'hangs-before-core', deadline: 12 },
  good: { version: '0.3.0', variant: 'good', deadline: 60 },
} as const;
// The unit's RestartSec=: every hand-over and every hand-back waits this long for the next start.
const RESTART_SEC = 5;

let manifest: Manifest;
let work: string;
let serverDir: string;
let server: Child;
let apiKey: string;
let device: BootedRoot;
let before: string[];
const figures: Record<string, string> = {};

const journal = async (grep = '') => (await device.sh(`journalctl -u meshanics-agent.service -o cat --no-pager ${grep}`)).stdout;
/** The agent's log lines in the journal, with journald's receive time (µs since the epoch). */
async function agentLines(): Promise<Array<{ us: number; msg: string }>> {
  const out = (await device.sh('journalctl -u meshanics-agent.service -o json --output-fields=MESSAGE --no-pager')).stdout;
  return out
    .split('\n')
    .filter(Boolean)
    .flatMap((l) => {
      const entry = JSON.parse(l) as { MESSAGE?: unknown; __REALTIME_TIMESTAMP: string };
      if (typeof entry.MESSAGE !== 'string' || !entry.MESSAGE.startsWith('{')) return [];
      try {
        return [{ us: Number(entry.__REALTIME_TIMESTAMP), msg: String((JSON.parse(entry.MESSAGE) as { msg?: unknown }).msg) }];
      } catch {
        return [];
      }
    });
}
const mainPid = async () => Number((await device.unit('MainPID'))[0]);
/**
 * The version directory the service's main process runs from: its argv[0] (the launcher execs
 * versions/<v>/bin/node). Its cmdline, not its exe link: that one needs ptrace rights over a
 * process of another user, which `podman exec` does not grant.
 */
const runningVersion = async () => {
  const pid = await mainPid();
  if (!pid) return undefined;
  const argv0 = (await device.sh(`tr '\\0' '\\n' < /proc/${pid}/cmdline | head -1`)).stdout.trim();
  return /\/versions\/([^/]+)\/bin\/node$/.exec(argv0)?.[1];
};
const call = async (urlPath: string): Promise<any> => (await fetch(server.api + urlPath, { headers: { authorization: `Bearer ${apiKey}` } })).json();
const assign = (spec: string[]) => serverCli(serverDir, ['assign', '--fleet', FLEET, '--device', DEVICE, ...spec]);
const probe = ['--probe-type', 'file', '--probe-spec', JSON.stringify({ path: READY })];

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  for (const end = Date.now() + timeoutMs; ;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; journal:\n${(await journal('-n 30')).trim()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Agent B from A's real tarball: versions/<A> renamed, core's version rewritten, the CLI replaced for a broken B. */
async function buildB(stage: string, a: string, b: (typeof B)[keyof typeof B]): Promise<string> {
  const root = path.join(stage, b.version);
  const from = path.join(root, 'usr/lib/meshanics-agent/versions');
  await mkdir(from, { recursive: true });
  await run('tar', ['-xzf', artifact(manifest, '-linux-x64.tar.gz'), '-C', root, `usr/lib/meshanics-agent/versions/${a}`]);
  await rename(path.join(from, a), path.join(from, b.version));
  const mods = path.join(from, b.version, 'node_modules/@meshanics/core');
  const pkg = JSON.parse(await readFile(path.join(mods, 'package.json'), 'utf8'));
  pkg.version = b.version;
  await writeFile(path.join(mods, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  const cli = path.join(mods, 'dist/cli/agent-cli.js');
  if (b.variant === 'exits-at-start') await writeFile(cli, "process.stderr.write('broken agent\\n');\nprocess.exit(1);\n");
  // Stays up and never reaches core: B's own deadline timer never runs, nothing exits.
  if (b.variant === 'hangs-before-core') await writeFile(cli, "process.stdout.write('agent B hangs before core\\n');\nsetInterval(() => {}, 60_000);\n");
  const out = path.join(stage, `meshanics-agent-${b.version}-linux-x64.tar.gz`);
  // Members named as `npm run package` names them (no leading ./: `-C root usr`). gzip -1: a
  // test fixture, the Node.js binary dominates; the agent reads any gzip.
  await run('tar', ['-I', 'gzip -1', '-cf', out, '--owner=0', '--group=0', '--numeric-owner', '-C', root, 'usr']);
  await rm(root, { recursive: true, force: true });
  await serverCli(serverDir, [
    'artifact',
    'publish',
    out,
    '--name',
    'meshanics-agent',
    '--version',
    b.version,
    '--kind',
    'agent',
    '--spec',
    JSON.stringify({ architecture: 'x64', healthDeadlineSeconds: b.deadline }),
  ]);
  return out;
}

beforeAll(async () => {
  if (skip) return;
  manifest = ensurePackages();
  work = await mkdtemp(path.join(os.tmpdir(), 'meshanics-pkg-systemd-'));
  serverDir = path.join(work, 'server');
  await serverCli(serverDir, ['init']);
  server = await startServer(serverDir, { extraArgs: ['--api-listen', '127.0.0.1:0'] });
  apiKey = (await serverCli(serverDir, ['apikey', 'create', '--name', 'pkgsd', '--fleet', '*', '--permissions', 'devices.manage'])).key;
  const stage = path.join(work, 'b');
  await mkdir(stage, { recursive: true });
  // Assigned as soon as it is up, so that afterAll removes it even when building B fails.
  await Promise.all([
    BootedRoot.boot(`meshanics-pkg-systemd-${process.pid}`, [OUT]).then((booted) => (device = booted)),
    (async () => {
      for (const b of Object.values(B)) await buildB(stage, manifest.version, b);
    })(),
  ]);
  before = await snapshot(device);
}, 900_000);

afterAll(async () => {
  if (Object.keys(figures).length) console.info(`packaged agent under systemd: ${JSON.stringify(figures)}`);
  await device?.remove();
  await server?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe.skipIf(Boolean(skip))(`the amd64 .deb under systemd as PID 1${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('dpkg -i enables the unit; after enroll it starts, is active as the meshanics user, heartbeats and takes a model HEALTHY', async () => {
    expect((await device.sh('cat /proc/1/comm')).stdout.trim()).toBe('systemd');
    const installed = await device.sh(`dpkg -i ${artifact(manifest, '_amd64.deb')}`);
    expect(installed.stderr).not.toMatch(/error/i);
    expect(installed.code).toBe(0);
    expect((await device.sh('systemctl is-enabled meshanics-agent.service')).stdout.trim()).toBe('enabled');
    // A first install does not start it: without an identity it would exit 2 (postinst's try-restart).
    expect((await device.sh('systemctl is-active meshanics-agent.service')).stdout.trim()).toBe('inactive');

    const token = (await serverCli(serverDir, ['enroll-token', 'create', '--fleet', FLEET])).token as string;
    const ca = new X509Certificate(await readFile(path.join(serverDir, 'pki', 'ca.crt'))).fingerprint256;
    const enrolled = await device.sh(`meshanics-agent enroll --server ${server.enroll} --token ${token} --name ${DEVICE} --ca-fingerprint ${ca}`);
    expect(enrolled.stderr).toBe('');
    expect(enrolled.code).toBe(0);
    expect((await device.sh('systemctl start meshanics-agent.service')).code).toBe(0);
    expect((await device.sh('systemctl is-active meshanics-agent.service')).stdout.trim()).toBe('active');
    await until('registered', async () => (await journal()).includes('"msg":"registered"'));
    expect((await device.sh(`stat -c %U /proc/${await mainPid()}`)).stdout.trim()).toBe('meshanics');
    expect(await runningVersion()).toBe(manifest.version);
    // Start (the unit leaving "inactive", ExecStartPre= included) to registration; the first
    // heartbeat is the next call, in the same tick (core's agent-daemon.ts).
    const [startedUs] = await device.unit('InactiveExitTimestampMonotonic');
    const registeredUs = (await device.sh(`journalctl -u meshanics-agent.service -o json --no-pager | grep '"msg\\\\":\\\\"registered' | head -1`)).stdout;
    const mono = Number(JSON.parse(registeredUs).__MONOTONIC_TIMESTAMP);
    figures.startToRegisteredMs = ((mono - Number(startedUs)) / 1000).toFixed(0);

    await device.sh(`echo ready > ${READY}`); // probe-file: an empty file is not ready
    await publishModel(serverDir, work, { name: 'detector', version: '1.0.0' }, Buffer.from('model under systemd'));
    const good = await assign(['--artifact', 'detector@1.0.0', ...probe]);
    const model = await waitForAssignment(serverDir, good.assignmentId);
    expect(model.state, JSON.stringify(model.reports.at(-1))).toBe('HEALTHY');
    expect(
      (await device.sh('cat /var/lib/meshanics-agent/artifacts/model/detector/current* 2>/dev/null; find /var/lib/meshanics-agent/artifacts -type f | xargs cat')).stdout,
    ).toContain('model under systemd');
    // Idle RSS of the unit's main process, read from the container's /proc after 10 s idle.
    await new Promise((r) => setTimeout(r, 10_000));
    const rss = /VmRSS:\s+(\d+) kB/.exec((await device.sh(`cat /proc/${await mainPid()}/status`)).stdout)?.[1];
    figures.idleRssMiB = (Number(rss) / 1024).toFixed(1);
  }, 180_000);

  it('exits 2 on an agent.json that does not validate, and systemd does not restart it (RestartPreventExitStatus)', async () => {
    await device.sh(`cp /etc/meshanics/agent.json /root/agent.json.good && printf '%s' '{"allowlist":{"writePaths":["relative/dir"]}}' > /etc/meshanics/agent.json`);
    const [restartsBefore] = await device.unit('NRestarts');
    await device.sh('systemctl restart meshanics-agent.service');
    await until('the unit failed', async () => (await device.unit('ActiveState'))[0] === 'failed');
    // Longer than RestartSec=: a restart would have happened by now.
    await new Promise((r) => setTimeout(r, (RESTART_SEC + 2) * 1000));
    const [state, result, status, restarts] = await device.unit('ActiveState', 'Result', 'ExecMainStatus', 'NRestarts');
    expect({ state, result, status }).toEqual({ state: 'failed', result: 'exit-code', status: '2' });
    expect(restarts).toBe(restartsBefore);
    expect(await journal()).toMatch(/MESH_ERR_CONFIG_INVALID: \/etc\/meshanics\/agent\.json: .*allowlist\/writePaths\/0 must match pattern/);
    await device.sh('cp /root/agent.json.good /etc/meshanics/agent.json && rm /root/agent.json.good && systemctl reset-failed meshanics-agent.service');
    const registeredBefore = (await journal()).split('"msg":"registered"').length;
    expect((await device.sh('systemctl start meshanics-agent.service')).code).toBe(0);
    await until('registered again', async () => (await journal()).split('"msg":"registered"').length > registeredBefore);
  }, 60_000);

  for (const key of ['exits', 'hangs'] as const) {
    const b = B[key];
    it(`rolls back a B that ${key === 'exits' ? 'exits 1 at start' : 'hangs before core'} under the unit: ROLLED_BACK, A runs again within the deadline + RestartSec + 10 s`, async () => {
      const a = manifest.version;
      const id = (await assign(['--artifact', `meshanics-agent@${b.version}`, ...probe])).assignmentId;
      // B's start under the unit (the hand-over's restart): its main process runs from versions/B.
      if (key === 'hangs') await until(`B ${b.version} running`, async () => (await runningVersion()) === b.version, 60_000);
      const view = await waitForAssignment(serverDir, id, { timeoutMs: 90_000 });
      expect(view.state, JSON.stringify(view.reports.at(-1))).toBe('ROLLED_BACK');
      const reason = view.reports.at(-1).reason as string;
      console.info(`B ${b.version} (${b.variant}): ${reason}`);
      expect(reason).toContain(`MESH_ERR_AGENT_HANDOVER: agent ${b.version} did not register and heartbeat within ${b.deadline} s`);
      if (key === 'exits') expect(reason, reason).toMatch(/exit codes of \d+ start\(s\) of the new agent: 1(, 1)*;/);
      const sequences = view.reports.map((r: { sequence: number }) => r.sequence);
      expect(sequences).toEqual([...sequences].sort((x: number, y: number) => x - y));
      await until('A running again', async () => (await runningVersion()) === a && (await device.unit('ActiveState'))[0] === 'active', 30_000);
      // From A's hand-over (its log line) to A running again (its start line: B never logs one)
      // and registered, by journald's clock.
      const lines = await agentLines();
      const handOver = lines.findLast((l) => l.msg === 'handing over to the new agent')!;
      const back = lines.find((l) => l.us > handOver.us && l.msg === 'agent starting')!;
      const registered = lines.find((l) => l.us > handOver.us && l.msg === 'registered')!;
      figures[`${key}: A starting again after the hand-over, ms`] = String(Math.round((back.us - handOver.us) / 1000));
      figures[`${key}: A registered again after the hand-over, ms`] = String(Math.round((registered.us - handOver.us) / 1000));
      // The issue's bound (deadline + 10 s) plus what the unit adds over a bare supervisor: its
      // RestartSec= before A's start. Measured here: deadline + 11.3 s for the hanging B at load
      // average 15-20 on 2 cores (watchdog grace 2 s, RestartSec 5 s, three node starts).
      expect(back.us - handOver.us).toBeLessThan((b.deadline + RESTART_SEC + 10) * 1_000_000);
      expect((await device.sh(`readlink ${LIB}/current; ls ${LIB}/versions`)).stdout.trim().split('\n')).toEqual([`versions/${a}`, a]);
      // Nothing of B is left running (the watchdog killed it, systemd ended the rest of its cgroup).
      // ([.] so that the pattern does not match this shell's own command line)
      const leftover = (await device.sh(`grep -l "versions/${b.version.replace(/\./g, '[.]')}/" /proc/[0-9]*/cmdline 2>/dev/null || true`)).stdout.trim();
      expect(leftover).toBe('');
    }, 120_000);
  }

  it('updates itself from A to B under the unit: HEALTHY, --version says B, heartbeats go on', async () => {
    const a = manifest.version;
    const id = (await assign(['--artifact', `meshanics-agent@${B.good.version}`, ...probe])).assignmentId;
    const view = await waitForAssignment(serverDir, id, { timeoutMs: 90_000 });
    expect(view.state, JSON.stringify(view.reports.at(-1))).toBe('HEALTHY');
    expect(view.reports.at(-1).reason).toMatch(new RegExp(`agent ${B.good.version} registered and heartbeated .* after the hand-over from ${a.replace(/[.+]/g, '\\$&')}`));
    expect(await runningVersion()).toBe(B.good.version);
    const lines = await agentLines();
    const handOver = lines.findLast((l) => l.msg === 'handing over to the new agent')!;
    const confirmed = lines.find((l) => l.us > handOver.us && l.msg === 'self-update confirmed healthy')!;
    figures.handOverToHealthyMs = String(Math.round((confirmed.us - handOver.us) / 1000));
    expect((await device.sh('meshanics-agent --version')).stdout.split('\n')[0]).toBe(`meshanics-agent ${B.good.version}`);
    expect((await device.sh(`readlink ${LIB}/current ${LIB}/previous`)).stdout.trim().split('\n')).toEqual([`versions/${B.good.version}`, `versions/${a}`]);
    const seen = await call(`/api/v1/devices/${FLEET}/${DEVICE}`);
    expect(seen.agentVersion).toBe(B.good.version);
    await new Promise((r) => setTimeout(r, 2500));
    expect(Date.parse((await call(`/api/v1/devices/${FLEET}/${DEVICE}`)).lastSeenAt)).toBeGreaterThan(Date.parse(seen.lastSeenAt));
  }, 120_000);

  it('dpkg -r stops the service (no agent process left, unit gone); dpkg --purge leaves nothing behind', async () => {
    const removed = await device.sh('dpkg -r meshanics-agent');
    expect(removed.code, removed.stderr).toBe(0);
    expect((await device.sh('systemctl is-active meshanics-agent.service')).stdout.trim()).toBe('inactive');
    const [load] = await device.unit('LoadState');
    expect(load).toBe('not-found');
    // No process of the service user, none running code from the package's root ([m]: the
    // pattern does not match this shell's own command line).
    const procs = await device.sh(
      `for p in /proc/[0-9]*; do u=$(stat -c %U $p 2>/dev/null); c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); case "$u $c" in meshanics*|*/usr/lib/[m]eshanics-agent*) echo "$p $u $c";; esac; done`,
    );
    expect(procs.stdout.trim()).toBe('');
    // The program is gone, the self-updated version included; config and data stay until purge.
    const afterRemove = await device.sh(
      `ls -d /usr/bin/meshanics-agent ${LIB} /usr/lib/systemd/system/meshanics-agent.service /etc/meshanics/agent.json /var/lib/meshanics-agent 2>/dev/null`,
    );
    expect(afterRemove.stdout.split('\n').filter(Boolean)).toEqual(['/etc/meshanics/agent.json', '/var/lib/meshanics-agent']);
    expect((await device.sh('dpkg --purge meshanics-agent')).code).toBe(0);
    await device.sh(`rm -f ${READY}`);
    // journald's own files are under /var/log (BOOKKEEPING).
    const { added, unexplained } = await leftovers(device, before);
    console.info(`after dpkg --purge under systemd, new paths (dpkg's, shadow's and journald's own records): ${JSON.stringify(added)}`);
    expect(unexplained).toEqual([]);
    expect(added.filter((p) => /meshanics/.test(p))).toEqual([]);
    expect((await device.sh('getent passwd meshanics; getent group meshanics; echo end')).stdout.trim()).toBe('end');
  }, 120_000);
});
