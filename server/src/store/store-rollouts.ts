// Store records and repositories of static groups, rollouts and the audit chain (migration 3).
import type { ProbeRecord, AssignmentState } from './store.js';

export interface GroupRecord {
  fleet: string;
  name: string;
  /** Device names as the operator gave them, in order (resolved when read or used). */
  devices: string[];
  createdAt: string;
  createdBy: string;
  updatedAt: string;
}

export interface GroupStore {
  /** False (nothing written) when the fleet already has a group of this name. */
  insert(group: GroupRecord): Promise<boolean>;
  get(fleet: string, name: string): Promise<GroupRecord | undefined>;
  list(filter?: { fleet?: string }): Promise<GroupRecord[]>;
  /** Replaces the member list; false when the group does not exist. */
  setDevices(fleet: string, name: string, devices: string[], now: string): Promise<boolean>;
}

export type RolloutStatusValue = 'running' | 'waiting_approval' | 'halted' | 'completed' | 'aborted';

export interface RolloutStrategyRecord {
  waves: Array<{ percent: number; approval: 'auto' | 'manual' }>;
  max_failure_rate: number;
}

export interface RolloutHaltRecord {
  reason: string;
  wave: number;
  failures: number;
  /** Failures a resume had already acknowledged when this halt happened. */
  acknowledged: number;
  targeted: number;
  tolerance: number;
  at: string;
}

export interface RolloutRecord {
  id: string;
  fleet: string;
  artifactId: string;
  artifactName: string;
  group: string;
  probe: ProbeRecord;
  strategy: RolloutStrategyRecord;
  status: RolloutStatusValue;
  currentWave: number;
  acknowledgedFailures: number;
  halt: RolloutHaltRecord | null;
  abortPolicy: 'keep' | 'revert' | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export interface RolloutDeviceRecord {
  rolloutId: string;
  deviceId: string;
  wave: number;
  position: number;
  assignmentId: string | null;
  assignedAt: string | null;
  previousVersion: string | null;
  previousArtifactId: string | null;
  revertAssignmentId: string | null;
  revertNote: string | null;
  revertedAt: string | null;
}

export interface RolloutAssignmentState {
  id: string;
  state: AssignmentState;
  reason: string;
  active: boolean;
  createdAt: string;
  updatedAt: string;
}

/** A rollout device joined with its device row and the states of its assignments. */
export interface RolloutDeviceView extends RolloutDeviceRecord {
  deviceName: string;
  decommissioned: boolean;
  assignment: RolloutAssignmentState | null;
  revert: RolloutAssignmentState | null;
}

/** What an abort with revert does for one device: a revert assignment (PENDING, active) or only a note. */
export interface RevertEntry {
  deviceId: string;
  revert: { assignmentId: string; artifactId: string; artifactName: string; probe: ProbeRecord } | null;
  note: string;
}

/** One page of a rollout's devices, in plan order (keyset: after a position, not an offset). */
export interface RolloutDevicePage {
  /** Only devices whose plan position is above this one (the previous page's last). */
  afterPosition?: number;
  limit: number;
  wave?: number;
  /** Only devices showing this state (the revert's, else the rollout assignment's, else PENDING). */
  state?: AssignmentState;
}

export interface RolloutWaveStart {
  wave: number;
  startedAt: string;
  startedBy: string;
}

export type RolloutUpdate = Partial<Pick<RolloutRecord, 'status' | 'currentWave' | 'acknowledgedFailures' | 'halt' | 'abortPolicy' | 'finishedAt'>>;

/** A rollout's progress as counts over its devices (rollouts/progress.ts decides on them). */
export interface RolloutProgressCounts {
  /** Every device of the rollout. */
  targeted: number;
  healthy: number;
  failed: number;
  rolledBack: number;
  /** Live devices of the started waves whose outcome is not terminal yet. */
  startedUnfinished: number;
}

/** Devices of one wave whose shown state is `state` (rollouts/detail.ts's per-device view, counted). */
export interface RolloutWaveStateCount {
  wave: number;
  /** The revert's state when the device was sent back, else its rollout assignment's, else PENDING. */
  state: AssignmentState;
  devices: number;
  /** Of those, live devices (not decommissioned) whose rollout assignment is missing or not terminal. */
  unfinished: number;
}

/**
 * What a rollout step reads before it takes any lock (rollouts/engine.ts, glanceSettles): the
 * rollout, and of its progress just enough for the halt rule and for "is the wave still
 * running", from a few index entries instead of every device.
 */
export interface RolloutGlance {
  rollout: RolloutRecord;
  /** Every device of the rollout (RolloutProgressCounts.targeted). */
  targeted: number;
  /** Failed and rolled-back devices: RolloutProgressCounts.failed + rolledBack, exactly. */
  failures: number;
  /**
   * Some live device of a started wave has a rollout assignment that is not finished. Never
   * true when progress() counts no started, unfinished device; false also when the only such
   * devices have no assignment at all (a state the server does not make: a device of a started
   * wave that was live when it started gets one), which the locked step then counts.
   */
  someStartedUnfinished: boolean;
}

export interface RolloutStore {
  insert(rollout: RolloutRecord, devices: Array<Pick<RolloutDeviceRecord, 'deviceId' | 'wave' | 'position'>>): Promise<void>;
  get(id: string): Promise<RolloutRecord | undefined>;
  /**
   * The rollout, locked for a decision until the caller's write transaction ends (PostgreSQL:
   * SELECT ... FOR UPDATE, which status report batches of its devices share-lock). Call under
   * Store.withWriteLock or Store.withRowLocks, before any device row lock (row-locks.ts).
   */
  lockForDecision(id: string): Promise<RolloutRecord | undefined>;
  /**
   * Locks the rows of every device of the rollout, at once in id order (PostgreSQL; nothing
   * on SQLite), for a decision that then writes to several of them one by one (abort revert).
   */
  lockDevices(rolloutId: string): Promise<void>;
  /** How many rollouts are in each status (metrics). */
  countByStatus(): Promise<Record<string, number>>;
  list(filter: { fleet?: string; status?: RolloutStatusValue; limit: number; offset: number }): Promise<{ items: RolloutRecord[]; total: number }>;
  /** Ids of the rollouts in one of `statuses`, oldest first. */
  listIds(statuses: readonly RolloutStatusValue[]): Promise<string[]>;
  update(id: string, patch: RolloutUpdate, now: string): Promise<void>;
  /** The rollout's devices in plan order; with `page`, one page of them (GET /rollouts/:id/devices). */
  listDevices(rolloutId: string, page?: RolloutDevicePage): Promise<RolloutDeviceView[]>;
  /**
   * The rollout's progress counts with waves up to `currentWave` started: what
   * rollouts/engine.ts progressOfDevices() computes from listDevices(), in one SQL aggregate.
   */
  progress(rolloutId: string, currentWave: number): Promise<RolloutProgressCounts>;
  /**
   * The rollout's devices counted by wave and shown state, in one SQL aggregate: what a
   * summary needs without a row per device (GET /rollouts lists up to 200 rollouts of up to
   * 100,000 devices each). Optional for stores written before it: the summary then counts
   * listDevices().
   */
  waveStateCounts?(rolloutId: string): Promise<RolloutWaveStateCount[]>;
  /**
   * The rollout and the counts a step needs to see that it has nothing to do, read outside
   * any transaction (one statement: one snapshot). Undefined for no such rollout, or when
   * no glance can be trusted (the step then locks and counts). Optional for stores written
   * before it: every step then takes the rollout's lock and counts.
   */
  glance?(rolloutId: string): Promise<RolloutGlance | undefined>;
  /** Devices among `deviceIds` held by an active rollout of `artifactName`. */
  busyDevices(deviceIds: readonly string[], artifactName: string): Promise<Array<{ deviceId: string; rolloutId: string }>>;
  /** The rollout ended: its devices are free for another rollout of the artifact name. */
  releaseDevices(rolloutId: string): Promise<void>;
  /** Deactivates the rollout's assignments no device has reported on yet; returns their ids. */
  deactivatePendingAssignments(rolloutId: string, now: string): Promise<string[]>;
  /** Per device of `deviceIds`, the probe of its latest assignment of `artifactId` that ended HEALTHY (to revert with). */
  lastHealthyProbes(artifactId: string, deviceIds: readonly string[]): Promise<Map<string, ProbeRecord>>;
  /**
   * Abort with revert, for many devices at once (call under the write lock, the devices'
   * rows locked): inserts each `revert` assignment, superseding the device's active one of
   * the artifact name, and records on the rollout what was sent back or why nothing was.
   */
  recordReverts(rolloutId: string, entries: readonly RevertEntry[], now: string): Promise<void>;
  recordWaveStart(rolloutId: string, start: RolloutWaveStart): Promise<void>;
  /**
   * Makes the assignments of `wave` for its devices that have none yet, superseding each
   * device's active assignment for the artifact name, and links them with what the device had
   * installed (for a revert). Decommissioned devices are skipped. A few statements per couple
   * of hundred devices: a wave of thousands must not be tens of thousands of round trips
   * under the write lock. Call under Store.withWriteLock.
   */
  startWaveAssignments(rollout: Pick<RolloutRecord, 'id' | 'artifactId' | 'artifactName' | 'probe'>, wave: number, now: string): Promise<{ started: string[]; skipped: string[] }>;
  listWaveStarts(rolloutId: string): Promise<RolloutWaveStart[]>;
}

export interface AuditListFilter {
  subject?: string;
  action?: string;
  /** Default 1000. */
  limit?: number;
  offset?: number;
  /** By seq; default ascending (oldest first). */
  order?: 'asc' | 'desc';
  /** Only events with a seq above this one (paging an export). */
  afterSeq?: number;
  /** Only events with a seq up to this one. */
  uptoSeq?: number;
}
