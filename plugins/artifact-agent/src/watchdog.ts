// The hand-over watchdog: a small detached process the OLD agent (A) starts from its own code
// just before it switches `current` to B and exits. It outlives the hand-over, so it acts even
// when B cannot run at all (crashes at start, hangs before its own timer): at the deadline
// (plus a grace that lets B's own timer act first) a marker that is still unconfirmed means B
// failed, so it points `current` at A again and kills B's processes; the service manager then
// starts A, which ends the assignment ROLLED_BACK. It never acts on a confirmed marker, and B
// never confirms after the deadline (core/src/runtime/self-update.ts), so the two cannot both win.
//   node watchdog.js <dataDir> <assignmentId>
//
// Under systemd the unit's KillMode=control-group ends this process together with A (it is in
// A's cgroup, detached or not), so the package's unit runs A's watchdog itself, from the
// previous version's code (A's during a trial; docs/operations.md):
//   ExecStartPre=-<root>/previous/bin/node <root>/previous/node_modules/@meshanics/artifact-agent/dist/watchdog.js --arm /var/lib/meshanics-agent %n
//     before every start of the service: during a trial it starts this watchdog (detached) in
//     the service's own cgroup, so it runs exactly as long as the start of B it guards and
//     kills B at the deadline even when B hangs before any of its code runs (a B that hangs
//     would otherwise never exit, and an ExecStopPost= check alone would never run);
//   ExecStopPost=-<root>/previous/bin/node .../watchdog.js --once /var/lib/meshanics-agent $EXIT_STATUS
//     after every exit: records B's exit status and decides the rollback once past the deadline.
// A watchdog started by A itself (above) is what a service manager without cgroups keeps.
import { spawn } from 'node:child_process';
import { openSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { abortableSleep, decideRollback, readSelfUpdateMarker, recordTrialExit } from '@meshanics/core';

/** How long after the deadline the watchdog waits for B's own hand-back. */
export const WATCHDOG_GRACE_MS = 2000;
const POLL_MS = 250;

/** Processes whose command line runs code from `<root>/versions/<version>/`. */
async function processesOf(versionDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await fs.readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').some((arg) => arg.startsWith(versionDir + path.sep))) pids.push(Number(entry));
  }
  return pids;
}

function missedDeadline(marker: { to: string; healthDeadlineSeconds: number; deadline: string }): string {
  return `MESH_ERR_AGENT_HANDOVER: agent ${marker.to} did not register and heartbeat within ${marker.healthDeadlineSeconds} s (it crashed or hung; missed deadline ${marker.deadline})`;
}

/**
 * One check after an exit of the service (systemd's ExecStopPost): record the new agent's exit
 * status during its trial, and decide the rollback once its deadline passed.
 */
export async function checkOnce(dataDir: string, exitStatus: string | undefined, log: (msg: string) => void): Promise<void> {
  const marker = await readSelfUpdateMarker(dataDir);
  if (!marker || marker.confirmedAt || marker.rolledBack) return;
  if (exitStatus && exitStatus !== '0' && exitStatus !== '75') recordTrialExit(dataDir, exitStatus);
  if (Date.now() >= Date.parse(marker.deadline) && (await decideRollback(dataDir, missedDeadline(marker)))) {
    log(`rolled back to ${marker.from}: current switched back after an exit past the deadline`);
  }
}

/**
 * The other processes of this process's own cgroup when that is UNIT's (the service's, under
 * systemd): B's main process and whatever it started, found without trusting B's command
 * line. Empty when this process is not in that unit's cgroup (never another service's: a test
 * or a shell that runs --arm by hand kills nothing here) or the cgroup file system is not
 * readable.
 */
async function cgroupPeers(unit: string): Promise<number[]> {
  const lines = (await fs.readFile('/proc/self/cgroup', 'utf8').catch(() => '')).split('\n');
  // cgroup v2 ("0::/path") or v1's systemd hierarchy ("N:name=systemd:/path").
  const unified = lines.find((l) => l.startsWith('0::'))?.slice(3);
  const named = lines.find((l) => l.includes(':name=systemd:'))?.split(':name=systemd:')[1];
  // The file system may be mounted at the container's own cgroup (podman): then only a tail
  // of the path exists below the mount point; try the longest first.
  const tails = (p: string) =>
    p
      .split('/')
      .filter(Boolean)
      .map((_, i, parts) => parts.slice(i).join('/'));
  const candidates = [
    ...(named ? tails(named).map((t) => path.join('/sys/fs/cgroup/systemd', t)) : []),
    ...(unified ? tails(unified).flatMap((t) => [path.join('/sys/fs/cgroup/unified', t), path.join('/sys/fs/cgroup', t)]) : []),
  ];
  for (const dir of candidates) {
    // Only the unit's own cgroup: never the root, a slice, or another service.
    if (path.basename(dir) !== unit) continue;
    const text = await fs.readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => undefined);
    const pids = text?.split('\n').filter(Boolean).map(Number);
    // Ours only if we are in it (a tail that happens to exist elsewhere is not our cgroup).
    if (!pids?.includes(process.pid)) continue;
    return pids.filter((pid) => pid !== process.pid);
  }
  return [];
}

/**
 * The unit's ExecStartPre=: when a start of the service is B's trial, start the watchdog for
 * it (detached: ExecStartPre must return before systemd starts B) from this, A's, code. Past
 * the deadline the rollback is decided here already, so this very start runs A.
 */
export async function arm(dataDir: string, unit: string | undefined, log: (msg: string) => void): Promise<void> {
  const marker = await readSelfUpdateMarker(dataDir);
  if (!marker || marker.confirmedAt || marker.rolledBack) return;
  if (Date.now() >= Date.parse(marker.deadline)) {
    if (await decideRollback(dataDir, missedDeadline(marker))) log(`rolled back to ${marker.from} before the start: past the deadline`);
    return;
  }
  const logFile = path.join(dataDir, 'logs', 'self-update-watchdog.log');
  await fs.mkdir(path.dirname(logFile), { recursive: true, mode: 0o700 });
  const out = openSync(logFile, 'a', 0o600);
  const args = [fileURLToPath(import.meta.url), dataDir, marker.assignment.assignmentId, ...(unit ? ['--cgroup', unit] : [])];
  spawn(process.execPath, args, { detached: true, stdio: ['ignore', out, out] }).unref();
  log(`watching the start of ${marker.to} until ${marker.deadline} (+${WATCHDOG_GRACE_MS} ms)`);
}

export async function watch(dataDir: string, assignmentId: string, log: (msg: string) => void, options: { unit?: string } = {}): Promise<void> {
  for (;;) {
    const marker = await readSelfUpdateMarker(dataDir);
    if (!marker || marker.assignment.assignmentId !== assignmentId || marker.confirmedAt) {
      log(marker?.confirmedAt ? 'new agent confirmed healthy; watchdog done' : 'hand-over settled; watchdog done');
      return;
    }
    if (Date.now() >= Date.parse(marker.deadline) + WATCHDOG_GRACE_MS) {
      if (!(await decideRollback(dataDir, missedDeadline(marker)))) continue; // confirmed meanwhile: next round returns
      const pids = [...new Set([...(await processesOf(path.join(marker.root, 'versions', marker.to))), ...(options.unit ? await cgroupPeers(options.unit) : [])])];
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      log(`rolled back to ${marker.from}: current switched back${pids.length ? `, killed ${pids.join(', ')}` : ''}`);
      return;
    }
    await abortableSleep(POLL_MS, new AbortController().signal);
  }
}

const args = process.argv.slice(2);
if (args.length >= 2 && process.argv[1] && path.basename(process.argv[1]).startsWith('watchdog')) {
  const log = (msg: string) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), service: 'meshanics-agent-watchdog', msg })}\n`);
  const work =
    args[0] === '--once'
      ? checkOnce(args[1]!, args[2], log)
      : args[0] === '--arm'
        ? arm(args[1]!, args[2], log)
        : watch(args[0]!, args[1]!, log, { unit: args[2] === '--cgroup' ? args[3] : undefined });
  work.catch((err: unknown) => {
    log(`watchdog failed: ${(err as Error).stack ?? String(err)}`);
    process.exitCode = 1;
  });
}
