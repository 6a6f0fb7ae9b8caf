// The hand-over watchdog: a small detached process the OLD agent (A) starts from its own code
// just before it switches `current` to B and exits. It outlives the hand-over, so it acts even
// when B cannot run at all (crashes at start, hangs before its own timer): at the deadline
// (plus a grace that lets B's own timer act first) a marker that is still unconfirmed means B
// failed, so it points `current` at A again and kills B's processes; the service manager then
// starts A, which ends the assignment ROLLED_BACK. It never acts on a confirmed marker, and B
// never confirms after the deadline (core/src/runtime/self-update.ts), so the two cannot both win.
//   node watchdog.js <dataDir> <assignmentId>
//
// Under systemd the unit's default KillMode=control-group ends this process together with A,
// so the package's unit also runs the same check once after every exit of the service, from
// the previous version's code (A's during a trial; docs/operations.md):
//   ExecStopPost=-/usr/lib/meshanics-agent/previous/bin/node \
//     /usr/lib/meshanics-agent/previous/node_modules/@meshanics/artifact-agent/dist/watchdog.js --once /var/lib/meshanics-agent $EXIT_STATUS
import { promises as fs } from 'node:fs';
import path from 'node:path';
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

export async function watch(dataDir: string, assignmentId: string, log: (msg: string) => void): Promise<void> {
  for (;;) {
    const marker = await readSelfUpdateMarker(dataDir);
    if (!marker || marker.assignment.assignmentId !== assignmentId || marker.confirmedAt) {
      log(marker?.confirmedAt ? 'new agent confirmed healthy; watchdog done' : 'hand-over settled; watchdog done');
      return;
    }
    if (Date.now() >= Date.parse(marker.deadline) + WATCHDOG_GRACE_MS) {
      if (!(await decideRollback(dataDir, missedDeadline(marker)))) continue; // confirmed meanwhile: next round returns
      const pids = await processesOf(path.join(marker.root, 'versions', marker.to));
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
  const work = args[0] === '--once' ? checkOnce(args[1]!, args[2], log) : watch(args[0]!, args[1]!, log);
  work.catch((err: unknown) => {
    log(`watchdog failed: ${(err as Error).stack ?? String(err)}`);
    process.exitCode = 1;
  });
}
