// The rollout's decision, as a pure function of what is stored: halt, wait, advance or
// finish. The caller acts on it only inside a write transaction, so two server replicas can
// never both act on the same state (settledAtGlance asks it outside one, to act on nothing).
import type { RolloutProgressCounts } from '../store/index.js';
import type { Strategy } from './strategy.js';

export type RolloutStatus = 'running' | 'waiting_approval' | 'halted' | 'completed' | 'aborted';

export type DeviceOutcome = 'pending' | 'in_progress' | 'healthy' | 'failed' | 'rolled_back';

/**
 * What a decision needs to know about the rollout's devices, as counts: the store computes
 * them in SQL (a wave of thousands of devices must not be read row by row on every report),
 * progressOf() from a device list; the two must agree. Declared with the store, which
 * computes them.
 */
export type RolloutProgress = RolloutProgressCounts;

export interface RolloutSnapshot {
  status: RolloutStatus;
  /** The highest wave whose assignments have been made (0-based). */
  currentWave: number;
  strategy: Strategy;
  /** Failures already acknowledged by a resume: only newer ones can halt again. */
  acknowledgedFailures: number;
  progress: RolloutProgress;
}

export interface DeviceProgress {
  wave: number;
  outcome: DeviceOutcome;
  /** False when the device no longer counts for wave completion (decommissioned, superseded). */
  live: boolean;
}

export type Decision =
  | { action: 'none' }
  | { action: 'halt'; wave: number; failures: number; targeted: number; tolerance: number }
  | { action: 'advance'; toWave: number }
  | { action: 'await_approval'; wave: number }
  | { action: 'complete' };

const TERMINAL: ReadonlySet<DeviceOutcome> = new Set(['healthy', 'failed', 'rolled_back']);

/** The counts of `devices` when waves up to `currentWave` have started. */
export function progressOf(devices: readonly DeviceProgress[], currentWave: number): RolloutProgress {
  const count = (pred: (d: DeviceProgress) => boolean) => devices.filter(pred).length;
  return {
    targeted: devices.length,
    healthy: count((d) => d.outcome === 'healthy'),
    failed: count((d) => d.outcome === 'failed'),
    rolledBack: count((d) => d.outcome === 'rolled_back'),
    startedUnfinished: count((d) => d.wave <= currentWave && d.live && !TERMINAL.has(d.outcome)),
  };
}

export function failureCount(progress: RolloutProgress): number {
  return progress.failed + progress.rolledBack;
}

/**
 * True when decide() answers 'none' on the glance's figures, and so on the full counts of the
 * same snapshot: the halt rule needs only targeted and failures, which the glance has exactly,
 * and "a started wave is unfinished" holds on the full counts whenever the glance saw it.
 */
export function settledAtGlance(snapshot: Omit<RolloutSnapshot, 'progress'>, glance: { targeted: number; failures: number; someStartedUnfinished: boolean }): boolean {
  const progress = { targeted: glance.targeted, healthy: 0, failed: glance.failures, rolledBack: 0, startedUnfinished: glance.someStartedUnfinished ? 1 : 0 };
  return decide({ ...snapshot, progress }).action === 'none';
}

export function decide(snapshot: RolloutSnapshot): Decision {
  if (snapshot.status !== 'running') return { action: 'none' };
  const { targeted } = snapshot.progress;
  const failures = failureCount(snapshot.progress);
  const tolerance = snapshot.strategy.max_failure_rate;
  // Halts fleet-wide, even in the middle of a wave.
  if (targeted > 0 && (failures - snapshot.acknowledgedFailures) / targeted > tolerance) {
    return { action: 'halt', wave: snapshot.currentWave, failures, targeted, tolerance };
  }
  if (snapshot.progress.startedUnfinished > 0) return { action: 'none' };
  const next = snapshot.currentWave + 1;
  if (next >= snapshot.strategy.waves.length) return { action: 'complete' };
  return snapshot.strategy.waves[next]!.approval === 'manual' ? { action: 'await_approval', wave: next } : { action: 'advance', toWave: next };
}
