// TypeScript shapes of the device contract's messages as @grpc/proto-loader decodes them
// with DEVICE_PROTO_LOADER_OPTIONS (camelCase fields, enums as strings, 64-bit as number).
// The .proto stays the single source: these types only describe its decoded form.

export const ARTIFACT_STATES = ['DOWNLOADING', 'VERIFYING', 'APPLYING', 'HEALTHY', 'ROLLED_BACK', 'FAILED'] as const;
export type ArtifactState = (typeof ARTIFACT_STATES)[number];

/** States after which an assignment never moves again. */
export const TERMINAL_STATES: ReadonlySet<ArtifactState> = new Set(['HEALTHY', 'ROLLED_BACK', 'FAILED']);

export function isArtifactState(value: unknown): value is ArtifactState {
  return typeof value === 'string' && (ARTIFACT_STATES as readonly string[]).includes(value);
}

export interface HardwareProfile {
  model: string;
  soc: string;
  arch: string;
  cpuCores: number;
  memoryBytes: number;
  accelerators: string[];
  os: string;
  kernel: string;
}

export interface Capability {
  kind: 'ARTIFACT' | 'PROBE' | 'KIND_UNSPECIFIED';
  name: string;
  version: string;
}

export interface RegisterRequest {
  hardware: HardwareProfile | null;
  agentVersion: string;
  tags: Record<string, string>;
  capabilities: Capability[];
}

export interface RegisterResponse {
  deviceName: string;
  fleet: string;
  heartbeatIntervalSeconds: number;
}

export interface InstalledArtifact {
  name: string;
  kind: string;
  version: string;
  sha256: string;
  state: ArtifactState | 'ARTIFACT_STATE_UNSPECIFIED';
}

export interface HeartbeatRequest {
  installed: InstalledArtifact[];
}

export interface ProbeMessage {
  type: string;
  specJson: string;
  timeoutSeconds: number;
  attempts: number;
  initialDelaySeconds: number;
}

export interface AssignmentMessage {
  assignmentId: string;
  rolloutId: string;
  kind: string;
  name: string;
  version: string;
  targetPath: string;
  expectedSha256: string;
  expectedLength: number;
  specJson: string;
  probe: ProbeMessage | null;
}

export interface LogRequestMessage {
  logRequestId: string;
  since: string;
  until: string;
  maxBytes: number;
}

export interface HeartbeatResponse {
  assignments: AssignmentMessage[];
  logRequests: LogRequestMessage[];
  offboarded: boolean;
  nextHeartbeatSeconds: number;
}

export interface ReportArtifactStatusRequest {
  assignmentId: string;
  state: ArtifactState;
  sequence: number;
  reason: string;
  bytesDone: number;
  bytesTotal: number;
  deviceTime: string;
}

export interface ReportArtifactStatusResponse {
  accepted: boolean;
}
