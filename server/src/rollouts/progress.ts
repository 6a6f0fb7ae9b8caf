// The rollout's decision, as a pure function of what is stored: halt, wait, advance or
// finish. The caller runs it inside a write transaction, so two server replicas can never
// both act on the same state.
import type { Strategy } from './strategy.js';

export type RolloutStatus = 'running' | 'waiting_approval' | 'halted' | 'completed' | 'aborted';

export type DeviceOutcome = 'pending' | 'in_progress' | 'healthy' | 'failed' | 'rolled_back';

export interface RolloutSnapshot {
  status: RolloutStatus;
  /** The highest wave whose assignments have been made (0-based). */
  currentWave: number;
  strategy: Strategy;
  /** Failures already acknowledged by a resume: only newer ones can halt again. */
  acknowledgedFailures: number;
  devices: Array<{ wave: number; outcome: DeviceOutcome; live: boolean }>;
}

export type Decision =
  | { action: 'none' }
  | { action: 'halt'; wave: number; failures: number; targeted: number; tolerance: number }
  | { action: 'advance'; toWave: number }
  | { action: 'await_approval'; wave: number }
  | { action: 'complete' };

const FAILED: ReadonlySet<DeviceOutcome> = new Set(['failed', 'rolled_back']);
const TERMINAL: ReadonlySet<DeviceOutcome> = new Set(['healthy', 'failed', 'rolled_back']);

export function failureCount(snapshot: RolloutSnapshot): number {
  return snapshot.devices.filter((d) => FAILED.has(d.outcome)).length;
}

export function decide(snapshot: RolloutSnapshot): Decision {
  if (snapshot.status !== 'running') return { action: 'none' };
  const targeted = snapshot.devices.length;
  const failures = failureCount(snapshot);
  const tolerance = snapshot.strategy.max_failure_rate;
  // Halts fleet-wide, even in the middle of a wave.
  if (targeted > 0 && (failures - snapshot.acknowledgedFailures) / targeted > tolerance) {
    return { action: 'halt', wave: snapshot.currentWave, failures, targeted, tolerance };
  }
  const started = snapshot.devices.filter((d) => d.wave <= snapshot.currentWave && d.live);
  if (!started.every((d) => TERMINAL.has(d.outcome))) return { action: 'none' };
  const next = snapshot.currentWave + 1;
  if (next >= snapshot.strategy.waves.length) return { action: 'complete' };
  return snapshot.strategy.waves[next]!.approval === 'manual' ? { action: 'await_approval', wave: next } : { action: 'advance', toWave: next };
}
