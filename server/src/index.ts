// @meshanics/server: the functions behind the CLI, reused by later surfaces (enrollment, REST API).
export { MeshError, ERROR_TABLE, isMeshError, type ErrorCode, type ErrorKind } from './errors.js';
export { createLogger, silentLogger, type Logger } from './log.js';
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
} from './data-dir.js';
export {
  startServer,
  DEFAULT_ARTIFACT_LISTEN,
  DEFAULT_GRPC_LISTEN,
  DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
  type RunningServer,
  type StartServerOptions,
} from './server.js';
export { openStore, type Store } from './store/index.js';
export {
  issueDeviceCertificate,
  DEFAULT_DEVICE_CERT_DAYS,
  type CertificateValidity,
  type IssuedCertificate,
  type DeviceCa,
} from './pki/index.js';
export { provisionDevice, decommissionDevice, type DeviceCredentials } from './devices.js';
export { publishArtifact, type PublishArtifactInput, type PublishedArtifact } from './artifacts.js';
export {
  createAssignment,
  getAssignment,
  PROBE_DEFAULTS,
  type AssignmentDetail,
  type CreateAssignmentInput,
  type CreatedAssignment,
  type ProbeInput,
} from './assignments.js';
export { knownArtifactKinds, knownProbeTypes } from './plugin-schemas.js';
