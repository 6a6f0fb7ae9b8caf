// The agent's hand-over to a new version of itself (issue 28), as seen by any agent that starts.
//
// The `agent` artifact plugin (the OLD agent, A) unpacks the new version B beside it, writes the
// marker below, switches `current` to B and exits with HANDOVER_EXIT_CODE; the service manager
// (systemd's Restart=, or whatever runs the agent) starts `current`, i.e. B. The marker, in the
// data dir both versions share, is the one record of the hand-over:
//   - it names the assignment, A, B and the deadline;
//   - only B, after it registered AND a heartbeat was answered before the deadline, reports
//     HEALTHY and clears it (confirmHealthy);
//   - any start of B after the deadline, B's own timer at the deadline, or the plugin's
//     detached watchdog (A's code: it runs even when B cannot) marks it rolled back and points
//     `current` at A again; any start of A with the marker present ends the assignment
//     ROLLED_BACK with the reason and removes B.
// So a B that starts and dies cannot clear it, and one that never gets that far is rolled
// back by the watchdog; docs/operations.md ("Updating the agent itself") has the full argument.
import { appendFileSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Agent } from '../agent.js';
import type { Assignment } from '../assignment.js';
import { readSymlink, swapSymlink, writeJsonAtomic } from '../kit/atomic-file.js';
import { installedRecordOf } from '../installed-record.js';

/** Exit code of an agent that hands over to another version: "start `current` again" (EX_TEMPFAIL). */
export const HANDOVER_EXIT_CODE = 75;
const MARKER_FILE = 'self-update.json';
const EXITS_FILE = 'self-update.exits';

export interface SelfUpdateMarker {
  assignment: Assignment;
  /** The version that handed over (known good) and the one on trial. */
  from: string;
  to: string;
  /** The versions root: `<root>/versions/<v>`, `<root>/current`, `<root>/previous`. */
  root: string;
  /** ISO time by which B must have registered and heartbeated. */
  deadline: string;
  healthDeadlineSeconds: number;
  handedOverAt: string;
  /** What the plugin kept about the artifact (goes into the installed record on success). */
  pluginState: Record<string, unknown>;
  /** Whether B's version directory was created by this update (a rollback removes it then). */
  createdTo: boolean;
  /** Set once B was confirmed healthy; nothing may roll back after that. */
  confirmedAt?: string;
  /** Set when the rollback was decided, with the reason the assignment ends with. */
  rolledBack?: { reason: string; at: string };
}

export function selfUpdateMarkerPath(dataDir: string): string {
  return path.join(dataDir, MARKER_FILE);
}

export async function readSelfUpdateMarker(dataDir: string): Promise<SelfUpdateMarker | undefined> {
  try {
    return JSON.parse(await fs.readFile(selfUpdateMarkerPath(dataDir), 'utf8')) as SelfUpdateMarker;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function writeSelfUpdateMarker(dataDir: string, marker: SelfUpdateMarker): Promise<void> {
  await writeJsonAtomic(selfUpdateMarkerPath(dataDir), marker);
}

async function clearMarker(dataDir: string): Promise<void> {
  await fs.rm(selfUpdateMarkerPath(dataDir), { force: true });
  await fs.rm(path.join(dataDir, EXITS_FILE), { force: true });
}

export function versionDirOf(root: string, version: string): string {
  return path.join(root, 'versions', version);
}

/** Points `<root>/<link>` at versions/<version> in one rename, unless it already does. */
export async function pointLinkAt(root: string, link: 'current' | 'previous', version: string): Promise<void> {
  const target = path.join('versions', version);
  if ((await readSymlink(path.join(root, link))) === target) return;
  await swapSymlink(path.join(root, link), target);
}

/** The version `<root>/current` points at, or undefined. */
export async function currentVersionIn(root: string): Promise<string | undefined> {
  const target = await readSymlink(path.join(root, 'current'));
  return target ? path.basename(target) : undefined;
}

/**
 * Decides the rollback (marker first, then `current` back to A). Idempotent; never after a
 * confirmation. Returns false when B was confirmed meanwhile.
 */
export async function decideRollback(dataDir: string, reason: string): Promise<boolean> {
  const marker = await readSelfUpdateMarker(dataDir);
  if (!marker || marker.confirmedAt) return false;
  if (!marker.rolledBack) {
    await writeSelfUpdateMarker(dataDir, { ...marker, rolledBack: { reason, at: new Date().toISOString() } });
  }
  await pointLinkAt(marker.root, 'current', marker.from);
  return true;
}

/** Records an exit of the new agent during its trial (its code goes into the rollback reason). */
export function recordTrialExit(dataDir: string, code: number | string): void {
  appendFileSync(path.join(dataDir, EXITS_FILE), `${code}\n`);
}

async function exitCodesSeen(dataDir: string): Promise<string> {
  const text = await fs.readFile(path.join(dataDir, EXITS_FILE), 'utf8').catch(() => '');
  const codes = text.split('\n').filter(Boolean);
  return codes.length > 0 ? `; exit codes of ${codes.length} start(s) of the new agent: ${codes.join(', ')}` : '';
}

/** A runs again: end the assignment ROLLED_BACK (once) and remove B. */
async function finishRollback(agent: Agent, marker: SelfUpdateMarker, running: string): Promise<void> {
  const reason =
    (marker.rolledBack?.reason ?? `the hand-over to ${marker.to} was interrupted before it was confirmed (agent ${running} started)`) + (await exitCodesSeen(agent.dataDir));
  await pointLinkAt(marker.root, 'current', marker.from);
  if (!agent.state.current.completed[marker.assignment.assignmentId]) {
    await agent.transition(marker.assignment, 'ROLLED_BACK', `MESH_ERR_AGENT_HANDOVER: ${reason}; agent ${marker.from} restored`);
  }
  if ((await readSymlink(path.join(marker.root, 'previous'))) === path.join('versions', marker.to)) {
    await fs.rm(path.join(marker.root, 'previous'), { force: true });
  }
  if (marker.createdTo && marker.to !== marker.from) {
    await fs.rm(versionDirOf(marker.root, marker.to), { recursive: true, force: true });
  }
  await clearMarker(agent.dataDir);
  agent.log.warn({ assignmentId: marker.assignment.assignmentId, from: marker.from, to: marker.to, reason }, 'agent self-update rolled back');
}

export interface HandoverTrial {
  /** Call after a heartbeat was answered: reports HEALTHY and clears the marker. */
  confirmHealthy(): Promise<void>;
  /**
   * Whether the trial owns this assignment: until HEALTHY is recorded no pipeline may start
   * for it (the server keeps assigning it; a pipeline would refuse B as "already running" and
   * end it FAILED, and after the deadline the hand-back ends it ROLLED_BACK instead).
   */
  holds(assignment: Assignment): boolean;
  stop(): void;
}

/** The assignment ends HEALTHY with B in the installed record (once: a repeat changes nothing). */
async function reportHealthy(agent: Agent, marker: SelfUpdateMarker, reason: string): Promise<void> {
  const { assignment } = marker;
  if (agent.state.current.completed[assignment.assignmentId]) return;
  const record = installedRecordOf(assignment, marker.pluginState, agent.state.current.installed[assignment.name]);
  await agent.transition(assignment, 'HEALTHY', reason, {}, (draft) => {
    draft.installed[assignment.name] = record;
  });
}

/**
 * What a starting agent does about a self-update in progress. Returns a trial when this agent
 * is the new version within its deadline; `exit` is called when it must hand back to A.
 */
export async function settleSelfUpdate(agent: Agent, running: string, exit: (code: number) => void): Promise<HandoverTrial | undefined> {
  const marker = await readSelfUpdateMarker(agent.dataDir);
  if (!marker) return undefined;
  if (marker.confirmedAt) {
    // Confirmed, then killed before the marker was removed: the HEALTHY report and the
    // installed record may not have been written yet (they come after the confirmation, which
    // must be durable first so nothing rolls back); write them now, once.
    await reportHealthy(agent, marker, `agent ${marker.to} was confirmed healthy at ${marker.confirmedAt} after the hand-over from ${marker.from}`);
    await clearMarker(agent.dataDir);
    return undefined;
  }
  if (running !== marker.to || marker.rolledBack) {
    await finishRollback(agent, marker, running);
    if (running !== marker.from) exit(HANDOVER_EXIT_CODE); // neither A nor B: let `current` (A) start
    return undefined;
  }
  const deadline = Date.parse(marker.deadline);
  const handBack = async (reason: string) => {
    if (await decideRollback(agent.dataDir, reason)) {
      agent.log.warn({ reason }, 'handing back to the previous agent');
      exit(HANDOVER_EXIT_CODE);
    }
  };
  const missed = `MESH_ERR_AGENT_HANDOVER: agent ${marker.to} did not register and heartbeat within ${marker.healthDeadlineSeconds} s (missed deadline ${marker.deadline})`;
  if (Date.now() >= deadline) {
    await handBack(missed);
    return undefined;
  }
  // A start that dies records its exit code for the reason (synchronous: the process is ending).
  const onExit = (code: number) => {
    if (code !== 0 && code !== HANDOVER_EXIT_CODE) recordTrialExit(agent.dataDir, code);
  };
  process.on('exit', onExit);
  let done = false;
  const timer = setTimeout(() => {
    if (!done) void handBack(missed).catch((err: unknown) => agent.log.error({ err }, 'hand-back failed'));
  }, deadline - Date.now());
  agent.log.info({ from: marker.from, to: marker.to, deadline: marker.deadline }, 'self-update trial: waiting for a healthy heartbeat');
  return {
    confirmHealthy: async () => {
      if (done) return;
      // Never after the deadline: from then on the watchdog may be rolling back.
      if (Date.now() >= deadline) return;
      done = true;
      clearTimeout(timer);
      process.off('exit', onExit);
      const confirmed = { ...marker, confirmedAt: new Date().toISOString() };
      await writeSelfUpdateMarker(agent.dataDir, confirmed);
      const seconds = ((Date.now() - Date.parse(marker.handedOverAt)) / 1000).toFixed(1);
      await reportHealthy(
        agent,
        confirmed,
        `agent ${marker.to} registered and heartbeated ${seconds} s after the hand-over from ${marker.from} (deadline ${marker.healthDeadlineSeconds} s)`,
      );
      await clearMarker(agent.dataDir);
      agent.log.info({ from: marker.from, to: marker.to }, 'self-update confirmed healthy');
    },
    // Until the assignment's outcome is recorded (HEALTHY here, or ROLLED_BACK by A after a hand-back).
    holds: (assignment) => assignment.assignmentId === marker.assignment.assignmentId && !agent.state.current.completed[assignment.assignmentId],
    stop: () => {
      done = true;
      clearTimeout(timer);
      process.off('exit', onExit);
    },
  };
}
