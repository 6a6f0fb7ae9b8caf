// @meshanics/server: the functions behind the CLI, reused by later surfaces (enrollment, REST API).
export { MeshError, ERROR_TABLE, httpStatusFor, isMeshError, type ErrorCode, type ErrorKind } from './errors.js';
export { createLogger, silentLogger, type Logger } from './observability/log.js';
export {
  DEFAULT_TRUST_DOMAIN,
  dataDirLayout,
  initDataDir,
  isDataDirInitialized,
  openDataDir,
  type DataDirLayout,
  type InitDataDirOptions,
  type InitializedDataDir,
  type MeshanicsContext,
} from './config/data-dir.js';
export {
  startServer,
  DEFAULT_ARTIFACT_LISTEN,
  DEFAULT_ENROLL_LISTEN,
  DEFAULT_GRPC_LISTEN,
  DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
  type RunningServer,
  type StartServerOptions,
} from './server.js';
export { openStore, type Store } from './store/index.js';
export { issueDeviceCertificate, verifyCsr, DEFAULT_DEVICE_CERT_DAYS, type CertificateValidity, type IssuedCertificate, type DeviceCa, type VerifiedCsr } from './pki/index.js';
export { provisionDevice, decommissionDevice, type DeviceCredentials } from './fleet/devices.js';
export { publishArtifact, type PublishArtifactInput, type PublishedArtifact } from './catalog/publish.js';
export { withdrawArtifact, type WithdrawArtifactInput, type WithdrawnArtifact } from './catalog/withdraw.js';
export {
  createAssignment,
  getAssignment,
  PROBE_DEFAULTS,
  type AssignmentDetail,
  type CreateAssignmentInput,
  type CreatedAssignment,
  type ProbeInput,
} from './fleet/assignments.js';
export { knownArtifactKinds, knownProbeTypes } from './catalog/plugin-schemas.js';
export {
  createEnrollmentToken,
  listEnrollmentTokens,
  revokeEnrollmentToken,
  enrollmentTokenStatus,
  ENROLLMENT_TOKEN_PREFIX,
  MAX_TOKEN_TTL_SECONDS,
  MAX_TOKEN_USES,
  type CreateEnrollmentTokenInput,
  type CreatedEnrollmentToken,
  type EnrollmentTokenStatus,
  type EnrollmentTokenView,
} from './enrollment/tokens.js';
export { enrollDevice, renewDeviceCertificate, type EnrollDeviceInput, type EnrollmentBundle, type RenewCertificateInput } from './enrollment/enroll.js';
export {
  createEnrollmentServer,
  createEnrollmentRequestHandler,
  ENROLL_PATH,
  RENEW_PATH,
  MAX_ENROLL_BODY_BYTES,
  type DeviceEndpoints,
  type EnrollmentResponse,
  type EnrollmentServerOptions,
} from './enrollment/http.js';
export {
  requestDeviceLogs,
  listLogRequests,
  getLogBundle,
  logUploadLimit,
  DEFAULT_LOG_MAX_BYTES,
  MAX_LOG_BYTES,
  LOG_UPLOAD_OVERHEAD_BYTES,
  type LogBundle,
  type LogRequestStatus,
  type LogRequestView,
  type RequestDeviceLogsInput,
} from './logs/requests.js';
export { parseDurationSeconds } from './config/durations.js';
export { createGroup, listGroups, getGroup, setGroupDevices, resolveGroupDevices, GROUP_NAME, MAX_GROUP_DEVICES, type CreateGroupInput, type GroupView } from './fleet/groups.js';
export {
  createRollout,
  getRollout,
  listRollouts,
  approveRollout,
  resumeRollout,
  abortRollout,
  driveRollouts,
  parseStrategy,
  STRATEGY_SCHEMA,
  ROLLOUT_STATUSES,
  ACTIVE_ROLLOUT_STATUSES,
  ABORT_POLICIES,
  ASSIGNMENT_STATES,
  type AbortPolicy,
  type CreateRolloutInput,
  type DriveAction,
  type RolloutDetail,
  type RolloutSummary,
  type RolloutDeviceDetail,
  type RolloutWaveDetail,
  type StateCounts,
  type Strategy,
} from './rollouts/index.js';
export { exportAudit, verifyAudit, type ExportedAuditEvent } from './audit/trail.js';
export { auditEventHash, canonicalJson, ChainVerifier, GENESIS_HASH, type ChainVerification, type ChainedAuditEvent } from './audit/chain.js';
export { buildApi, defaultConsoleDir, API_PREFIX, type ApiOptions } from './api/app.js';
export {
  createApiKey,
  listApiKeys,
  revokeApiKey,
  authenticateApiKey,
  normalizePermissions,
  grants,
  API_KEY_PREFIX,
  PERMISSION_AREAS,
  PERMISSION_LEVELS,
  type ApiKeyView,
  type CreateApiKeyInput,
  type CreatedApiKey,
  type Permission,
  type Requirement,
} from './api/keys.js';
export { DEFAULT_API_LISTEN } from './config/defaults.js';
