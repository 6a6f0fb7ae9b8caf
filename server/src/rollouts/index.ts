// rollouts/ owns rollouts: strategy and waves (strategy.ts, wave-plan.ts), the decision as a pure function of what is
// stored (progress.ts), the engine that applies it in one write transaction (engine.ts), operator actions
// (service.ts), the detail view (detail.ts) and the queue that coalesces steps after status reports (drive-queue.ts).
// May import: fleet/ (groups, assignments, capabilities), store/, config/, observability/, ../errors.ts,
// @meshanics/core/contract. Never api/, device-api/ or catalog/. Imported by api/, cli/ and server.ts.
//
// Rollouts: a group, an artifact version, a probe and a strategy of waves, driven by the engine.
export {
  createRollout,
  getRollout,
  getRolloutSummary,
  getRolloutDevices,
  listRollouts,
  approveRollout,
  resumeRollout,
  abortRollout,
  ROLLOUT_STATUSES,
  ACTIVE_ROLLOUT_STATUSES,
  ABORT_POLICIES,
  type AbortPolicy,
  type CreateRolloutInput,
  type RolloutView,
} from './service.js';
export { driveRollouts, ENGINE_ACTOR, type DriveAction } from './engine.js';
export {
  buildRolloutDetail,
  ASSIGNMENT_STATES,
  type RolloutDevicesPage,
  type RolloutDetail,
  type RolloutSummary,
  type RolloutDeviceDetail,
  type RolloutWaveDetail,
  type StateCounts,
} from './detail.js';
export { parseStrategy, cumulativeCounts, DEFAULT_STRATEGY, STRATEGY_SCHEMA, type Strategy, type Wave, type Approval } from './strategy.js';
export { planWaves, stableOrder, type PlannedDevice } from './wave-plan.js';
export { decide, failureCount, type Decision, type RolloutSnapshot, type RolloutStatus, type DeviceOutcome } from './progress.js';
