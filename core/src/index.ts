// @meshanics/core: the agent runtime and the plugin kit.
export * from './contract/index.js';
export { Agent, type AgentOptions, type ValidatedAssignment } from './agent.js';
export { assignmentFromMessage, type Assignment } from './assignment.js';
export { ERROR_CODES, MeshError, VENDOR_ERROR_CODE, isMeshError, reasonOf, type ErrorCode, type VendorErrorCode } from './errors.js';
export { ARTIFACT_STAGES, createHooks, type AgentHooks, type ArtifactStage } from './hooks.js';
export type {
  ArtifactContext,
  InstalledArtifactRecord,
  MeshanicsPlugin,
  PluginProvides,
  ProbeAttemptContext,
  ProbeResult,
  RollbackContext,
  TransitionEvent,
  ValidationContext,
  VerifiedTarget,
} from './plugin.js';
export { runPipeline } from './pipeline.js';
export { recoverInterrupted } from './recovery.js';
export { Reconciler } from './reconciler.js';
export { runProbe, attemptSpacingSeconds, type ProbeOutcome } from './probe-runner.js';
export { AgentStateStore, type AgentStateData, type PendingReport } from './state/agent-state.js';
export type { TargetSource } from './target-source.js';
export { TufTargetSource, type TufTargetSourceOptions } from './tuf/tuf-target-source.js';
export {
  CALL_DEADLINE_MS,
  DEVICE_CHANNEL_OPTIONS,
  DeviceClient,
  deviceCallMetadata,
  RECONNECT_BACKOFF,
  sleepUnlessReconnected,
  type DeviceClientOptions,
} from './runtime/device-client.js';
export { ResumingChannelCredentials } from './runtime/resuming-credentials.js';
export { AgentDaemon, type DaemonExit } from './runtime/agent-daemon.js';
export { StatusReporter } from './runtime/status-reporter.js';
export { CALL_RETRY_BACKOFF, REPORT_RETRY_BACKOFF, retryDelayMs, retryWindowMs, type RetryBackoff } from './runtime/retry-backoff.js';
export { DEFAULT_PLUGINS, loadPlugins, pluginName, resolvePlugin, type PluginEntry, type PluginSearch } from './plugin-loader.js';
export type { DeviceTlsMaterial } from './transport/tls.js';
// The plugin kit: shared behaviour for plugin authors.
export { writeFileAtomic, writeJsonAtomic, fsyncDir, tempSibling, exists, swapSymlink, readSymlink } from './kit/atomic-file.js';
export { swapIn, swapBack, removeSwapLeftovers, type SwapRecord, type SwapInOptions } from './kit/atomic-swap.js';
export { flipBack, flipToInactiveSlot, inactiveSlot, removeSlotLeftovers, type FlipToInactiveSlotOptions, type SlotFlipRecord } from './kit/ab-slots.js';
export { abortableSleep } from './kit/sleep.js';
export { runAllowlistedBinary, describeRun, type RunBinaryResult, type RunBinaryOptions } from './kit/run-binary.js';
export { assertBindMountPath, assertExecBinary, assertHttpHost, assertSystemdUnit, assertWritableDestination, isCleanAbsolutePath, isHttpHostAllowed } from './kit/allowlist.js';
export {
  AGENT_CONFIG_SCHEMA,
  DEFAULT_CONFIG_PATH,
  LOOPBACK_HOSTS,
  defaultAllowlist,
  loadAgentConfig,
  parseAgentConfig,
  type AgentConfig,
  type Allowlist,
} from './config/agent-config.js';
export {
  HANDOVER_EXIT_CODE,
  currentVersionIn,
  decideRollback,
  pointLinkAt,
  readSelfUpdateMarker,
  recordTrialExit,
  selfUpdateMarkerPath,
  settleSelfUpdate,
  versionDirOf,
  writeSelfUpdateMarker,
  type HandoverTrial,
  type SelfUpdateMarker,
} from './runtime/self-update.js';
