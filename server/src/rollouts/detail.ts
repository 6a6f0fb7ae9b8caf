// The operator's view of a rollout: per device its wave, state, timestamps and reason;
// counts per state and per wave (docs/operator-api.md, "Rollout detail").
import { TERMINAL_STATES } from '@meshanics/core/contract';
import type { MeshanicsContext } from '../config/data-dir.js';
import type {
  ArtifactRecord,
  AssignmentState,
  ProbeRecord,
  RolloutDevicePage,
  RolloutDeviceView,
  RolloutHaltRecord,
  RolloutRecord,
  RolloutStatusValue,
  RolloutStrategyRecord,
} from '../store/index.js';
import { isLive } from './engine.js';

export const ASSIGNMENT_STATES: readonly AssignmentState[] = ['PENDING', 'DOWNLOADING', 'VERIFYING', 'APPLYING', 'HEALTHY', 'ROLLED_BACK', 'FAILED'];

export type StateCounts = Record<AssignmentState, number>;

export interface RolloutDeviceDetail {
  name: string;
  wave: number;
  /** PENDING until the device reports, then its latest state; after a revert, the revert's. */
  state: AssignmentState;
  reason: string;
  /** When the device's wave started (null: not yet, or never). */
  assignedAt: string | null;
  updatedAt: string | null;
  assignmentId: string | null;
  /** What the device had installed under the artifact name when its wave started. */
  previousVersion: string | null;
  /** Abort with policy revert: what the device was sent back to, or why nothing was. */
  revert: { toVersion: string | null; assignmentId: string | null; state: AssignmentState | null; note: string | null; at: string } | null;
  decommissioned: boolean;
}

export interface RolloutWaveDetail {
  index: number;
  percent: number;
  approval: 'auto' | 'manual';
  status: 'pending' | 'active' | 'complete';
  devices: number;
  counts: StateCounts;
  startedAt: string | null;
  startedBy: string | null;
}

export interface RolloutSummary {
  id: string;
  fleet: string;
  status: RolloutStatusValue;
  artifact: { name: string; version: string; kind: string };
  group: string;
  probe: ProbeRecord;
  strategy: RolloutStrategyRecord;
  currentWave: number;
  halt: RolloutHaltRecord | null;
  acknowledgedFailures: number;
  abortPolicy: 'keep' | 'revert' | null;
  counts: StateCounts;
  waves: RolloutWaveDetail[];
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export interface RolloutDetail extends RolloutSummary {
  devices: RolloutDeviceDetail[];
}

export function emptyCounts(): StateCounts {
  return Object.fromEntries(ASSIGNMENT_STATES.map((s) => [s, 0])) as StateCounts;
}

function deviceDetail(rollout: RolloutRecord, d: RolloutDeviceView, versionOf: (id: string) => string | null): RolloutDeviceDetail {
  const shown = d.revert ?? d.assignment;
  let reason = shown?.reason ?? '';
  if (!d.revert && d.assignment && !d.assignment.active && d.assignment.state === 'PENDING') {
    reason = rollout.status === 'aborted' ? 'not started: the rollout was aborted' : 'superseded by another assignment before the device started';
  }
  return {
    name: d.deviceName,
    wave: d.wave,
    state: shown?.state ?? 'PENDING',
    reason,
    assignedAt: d.assignedAt,
    updatedAt: shown?.updatedAt ?? null,
    assignmentId: d.assignmentId,
    previousVersion: d.previousVersion,
    revert: d.revertedAt
      ? {
          toVersion: d.revertAssignmentId && d.previousArtifactId ? versionOf(d.previousArtifactId) : null,
          assignmentId: d.revertAssignmentId,
          state: d.revert?.state ?? null,
          note: d.revertNote,
          at: d.revertedAt,
        }
      : null,
    decommissioned: d.decommissioned,
  };
}

/** The details of `views`, reading each version they were sent back to once. */
async function deviceDetails(store: MeshanicsContext['store'], rollout: RolloutRecord, views: readonly RolloutDeviceView[]): Promise<RolloutDeviceDetail[]> {
  const versions = new Map<string, string | null>();
  for (const v of views) {
    const id = v.previousArtifactId;
    if (id !== null && !versions.has(id)) versions.set(id, (await store.getArtifactById(id))?.version ?? null);
  }
  const versionOf = (id: string): string | null => versions.get(id) ?? null;
  return views.map((v) => deviceDetail(rollout, v, versionOf));
}

export interface RolloutDevicesPage {
  items: RolloutDeviceDetail[];
  /** The `after` of the next page; null on the last one. */
  next: number | null;
}

/**
 * One page of the rollout's devices in plan order, filtered by wave and shown state: what a
 * client of a rollout of tens of thousands of devices reads instead of the whole detail.
 */
export async function buildRolloutDevicesPage(ctx: Pick<MeshanicsContext, 'store'>, rollout: RolloutRecord, page: RolloutDevicePage): Promise<RolloutDevicesPage> {
  // One more than asked: a page that ends the list says so (next null), even when it is full.
  const views = await ctx.store.rollouts.listDevices(rollout.id, { ...page, limit: page.limit + 1 });
  const shown = views.slice(0, page.limit);
  const items = await deviceDetails(ctx.store, rollout, shown);
  return { items, next: views.length > page.limit ? shown.at(-1)!.position : null };
}

/** What the summary's counts are made of, whether from the device rows or one aggregate. */
interface WaveTally {
  counts: StateCounts;
  devices: number;
  /** Live devices (engine.ts, isLive) whose rollout assignment is missing or not terminal. */
  unfinished: number;
}

function emptyTallies(rollout: RolloutRecord): WaveTally[] {
  return rollout.strategy.waves.map(() => ({ counts: emptyCounts(), devices: 0, unfinished: 0 }));
}

/**
 * Builds the summary (and the per-device list when `withDevices`) of one rollout. Without the
 * list the counts come from one aggregate (store.rollouts.waveStateCounts), so a listing of
 * rollouts of 100,000 devices each reads a few rows per rollout, not every device.
 */
export async function buildRolloutDetail(ctx: Pick<MeshanicsContext, 'store'>, rollout: RolloutRecord, withDevices: boolean): Promise<RolloutDetail | RolloutSummary> {
  const { store } = ctx;
  if (!withDevices && store.rollouts.waveStateCounts) {
    const tallies = emptyTallies(rollout);
    for (const c of await store.rollouts.waveStateCounts(rollout.id)) {
      const t = tallies[c.wave];
      if (!t) continue;
      t.counts[c.state] += c.devices;
      t.devices += c.devices;
      t.unfinished += c.unfinished;
    }
    return summarize(store, rollout, tallies);
  }
  const views = await store.rollouts.listDevices(rollout.id);
  const devices = await deviceDetails(store, rollout, views);
  const tallies = emptyTallies(rollout);
  views.forEach((v, i) => {
    const t = tallies[v.wave];
    if (!t) return;
    t.counts[devices[i]!.state] += 1;
    t.devices += 1;
    if (isLive(v) && !(v.assignment && TERMINAL_STATES.has(v.assignment.state as never))) t.unfinished += 1;
  });
  const summary = await summarize(store, rollout, tallies);
  return withDevices ? { ...summary, devices } : summary;
}

async function summarize(store: MeshanicsContext['store'], rollout: RolloutRecord, tallies: WaveTally[]): Promise<RolloutSummary> {
  const artifact: ArtifactRecord | undefined = await store.getArtifactById(rollout.artifactId);
  const starts = new Map((await store.rollouts.listWaveStarts(rollout.id)).map((s) => [s.wave, s]));
  const counts = emptyCounts();
  for (const t of tallies) for (const state of ASSIGNMENT_STATES) counts[state] += t.counts[state];
  const waves: RolloutWaveDetail[] = rollout.strategy.waves.map((w, index) => {
    const t = tallies[index]!;
    const start = starts.get(index);
    return {
      index,
      percent: w.percent,
      approval: w.approval,
      status: index > rollout.currentWave || !start ? 'pending' : t.unfinished === 0 ? 'complete' : 'active',
      devices: t.devices,
      counts: t.counts,
      startedAt: start?.startedAt ?? null,
      startedBy: start?.startedBy ?? null,
    };
  });
  return {
    id: rollout.id,
    fleet: rollout.fleet,
    status: rollout.status,
    artifact: { name: rollout.artifactName, version: artifact?.version ?? '', kind: artifact?.kind ?? '' },
    group: rollout.group,
    probe: rollout.probe,
    strategy: rollout.strategy,
    currentWave: rollout.currentWave,
    halt: rollout.halt,
    acknowledgedFailures: rollout.acknowledgedFailures,
    abortPolicy: rollout.abortPolicy,
    counts,
    waves,
    createdBy: rollout.createdBy,
    createdAt: rollout.createdAt,
    updatedAt: rollout.updatedAt,
    finishedAt: rollout.finishedAt,
  };
}
