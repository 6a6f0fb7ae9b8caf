// The rollout engine: reads a rollout's stored state, asks decide() what to do, and applies
// the answer, all inside one write transaction per rollout (after an unlocked glance that
// ends the step when there is plainly nothing to do, glanceSettles). SQLite: BEGIN IMMEDIATE, so two
// server processes on one data dir (or `serve` and a CLI approve) can never both advance a
// wave. PostgreSQL: no global lock (Store.withRowLocks); the transaction holds the rollout's
// row lock (SELECT ... FOR UPDATE), which status report batches of its devices share-lock,
// and the decision is taken on what it reads after it is granted: two replicas never both
// advance a wave (the second one sees the wave already started), and the counts include
// every report committed before the step and none half-way (store/row-locks.ts).
import { TERMINAL_STATES } from '@meshanics/core/contract';
import type { MeshanicsContext } from '../config/data-dir.js';
import type { AssignmentState, RolloutDeviceView, RolloutRecord, Store } from '../store/index.js';
import { auditedList } from './audited-devices.js';
import { decide, failureCount, progressOf, settledAtGlance, type DeviceOutcome, type RolloutProgress } from './progress.js';

/** The actor of transitions the engine makes on its own. */
export const ENGINE_ACTOR = 'system:rollouts';

export type EngineContext = Pick<MeshanicsContext, 'store' | 'logger'>;

export interface DriveAction {
  rolloutId: string;
  action: 'advance' | 'await_approval' | 'halt' | 'complete';
  wave?: number;
}

export function outcomeOf(state: AssignmentState | undefined): DeviceOutcome {
  switch (state) {
    case undefined:
    case 'PENDING':
      return 'pending';
    case 'HEALTHY':
      return 'healthy';
    case 'FAILED':
      return 'failed';
    case 'ROLLED_BACK':
      return 'rolled_back';
    case 'DOWNLOADING':
    case 'VERIFYING':
    case 'APPLYING':
    default: // a state the database holds that this version does not know yet
      return 'in_progress';
  }
}

/**
 * A device counts for wave completion unless it was decommissioned, or its assignment was
 * superseded (by an operator's own assignment, or stopped by an abort) before it finished.
 * The rollout detail's wave status uses the same rule, so the console never shows a wave
 * active that the engine has moved past.
 */
export function isLive(d: RolloutDeviceView): boolean {
  if (d.decommissioned) return false;
  if (d.assignment && !d.assignment.active && !TERMINAL_STATES.has(d.assignment.state as never)) return false;
  return true;
}

/** The store's progress counts computed row by row: the reference its SQL is tested against. */
export function progressOfDevices(rollout: Pick<RolloutRecord, 'currentWave'>, devices: RolloutDeviceView[]): RolloutProgress {
  return progressOf(
    devices.map((d) => ({ wave: d.wave, outcome: outcomeOf(d.assignment?.state), live: isLive(d) })),
    rollout.currentWave,
  );
}

export function rolloutSubject(id: string): string {
  return `rollout:${id}`;
}

/**
 * Makes the assignments of `wave` for its devices (call under the write lock), recording
 * what each device had installed under the artifact name, for a later revert.
 */
export async function startWave(store: Store, rollout: RolloutRecord, wave: number, actor: string, now: string): Promise<void> {
  const { started, skipped } = await store.rollouts.startWaveAssignments(rollout, wave, now);
  await store.rollouts.recordWaveStart(rollout.id, { wave, startedAt: now, startedBy: actor });
  await store.appendAudit({
    at: now,
    actor,
    action: 'rollout.wave_started',
    subject: rolloutSubject(rollout.id),
    details: { wave, ...auditedList('devices', started), ...(skipped.length > 0 ? auditedList('skippedDecommissioned', skipped) : {}) },
  });
}

/**
 * One rollout's progression, under the caller's write lock: decide and apply until there is
 * nothing more to do now (an empty wave is passed straight through).
 */
export async function stepRollout(ctx: EngineContext, rolloutId: string): Promise<DriveAction[]> {
  const { store } = ctx;
  const actions: DriveAction[] = [];
  for (let guard = 0; guard < 64; guard++) {
    const rollout = await store.rollouts.lockForDecision(rolloutId);
    if (!rollout) return actions;
    // Counts computed by the database: this runs after reports during a wave of thousands.
    const progress = await store.rollouts.progress(rolloutId, rollout.currentWave);
    const decision = decide({ ...rollout, progress });
    const now = new Date().toISOString();
    const subject = rolloutSubject(rolloutId);
    switch (decision.action) {
      case 'none':
        return actions;
      case 'advance':
        await store.rollouts.update(rolloutId, { currentWave: decision.toWave }, now);
        await startWave(store, { ...rollout, currentWave: decision.toWave }, decision.toWave, ENGINE_ACTOR, now);
        actions.push({ rolloutId, action: 'advance', wave: decision.toWave });
        ctx.logger.info({ rolloutId, wave: decision.toWave }, 'rollout wave started');
        continue;
      case 'await_approval':
        await store.rollouts.update(rolloutId, { status: 'waiting_approval' }, now);
        await store.appendAudit({ at: now, actor: ENGINE_ACTOR, action: 'rollout.awaiting_approval', subject, details: { wave: decision.wave } });
        actions.push({ rolloutId, action: 'await_approval', wave: decision.wave });
        ctx.logger.info({ rolloutId, wave: decision.wave }, 'rollout waits for approval');
        return actions;
      case 'halt': {
        const fresh = decision.failures - rollout.acknowledgedFailures;
        const reason =
          `${fresh} ${rollout.acknowledgedFailures > 0 ? 'new ' : ''}failure(s) among ${decision.targeted} targeted devices ` +
          `(failure rate ${+(fresh / decision.targeted).toFixed(4)}) exceed max_failure_rate ${decision.tolerance}`;
        const halt = {
          reason,
          wave: decision.wave,
          failures: decision.failures,
          acknowledged: rollout.acknowledgedFailures,
          targeted: decision.targeted,
          tolerance: decision.tolerance,
          at: now,
        };
        await store.rollouts.update(rolloutId, { status: 'halted', halt }, now);
        await store.appendAudit({ at: now, actor: ENGINE_ACTOR, action: 'rollout.halted', subject, details: { ...halt } });
        actions.push({ rolloutId, action: 'halt', wave: decision.wave });
        ctx.logger.warn({ rolloutId, ...halt }, 'rollout halted');
        return actions;
      }
      case 'complete': {
        await store.rollouts.update(rolloutId, { status: 'completed', finishedAt: now }, now);
        await store.rollouts.releaseDevices(rolloutId);
        await store.appendAudit({
          at: now,
          actor: ENGINE_ACTOR,
          action: 'rollout.completed',
          subject,
          details: {
            targeted: progress.targeted,
            healthy: progress.healthy,
            failed: progress.failed,
            rolled_back: progress.rolledBack,
            failures: failureCount(progress),
          },
        });
        actions.push({ rolloutId, action: 'complete' });
        ctx.logger.info({ rolloutId }, 'rollout completed');
        return actions;
      }
    }
  }
  return actions;
}

/**
 * Whether the rollout has nothing to do now, seen without a lock or a count of every device
 * (store.rollouts.glance: committed state, one snapshot). Sound because a 'none' it answers
 * can only be made wrong by a later commit, and every such commit brings a step that starts
 * after it: a status report's (the device service asks for one once the report is stored),
 * an operator's (approve and resume step under the lock themselves), and for a decommission
 * or a superseding assignment, `serve`'s periodic step, as before. A step that would act
 * takes the lock and counts exactly (stepRollout). Most steps during a wave are 'none': they
 * no longer hold the rollout's row lock (PostgreSQL), which report batches of its devices
 * queued behind, nor count a wave of thousands once a second per replica.
 */
async function glanceSettles(store: Store, rolloutId: string): Promise<boolean> {
  const glance = await store.rollouts.glance?.(rolloutId);
  if (glance === undefined) return false;
  return settledAtGlance(glance.rollout, glance);
}

/**
 * The progression step: for each running rollout (or just `rolloutId`), decide and apply in
 * its own write transaction, unless a glance shows there is nothing to do. Called after
 * stored status reports and on a timer by `serve`. A failure on one rollout is logged and
 * does not stop the others.
 */
export async function driveRollouts(ctx: EngineContext, options: { rolloutId?: string } = {}): Promise<DriveAction[]> {
  const { store } = ctx;
  const ids = options.rolloutId !== undefined ? [options.rolloutId] : await store.rollouts.listIds(['running']);
  const actions: DriveAction[] = [];
  for (const id of ids) {
    try {
      if (await glanceSettles(store, id)) continue;
      actions.push(...(await store.withRowLocks(() => stepRollout(ctx, id))));
    } catch (err) {
      ctx.logger.error({ err, rolloutId: id }, 'rollout progression failed');
    }
  }
  return actions;
}
