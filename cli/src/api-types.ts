// What the operator REST API answers (docs/operator-api.md), declared once for both of its
// clients: this CLI and the web console, which imports it type-only (`@meshanics/cli/api-types`,
// erased from its JavaScript). No imports and nothing that exists at run time, so the
// browser build needs neither Node's types nor any of the CLI's code.

export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

export interface WhoAmI {
  id?: string;
  name: string;
  fleet: string;
  permissions: string[];
  approve: boolean;
}

export interface DeviceSummary {
  fleet: string;
  name: string;
  spiffeId: string;
  agentVersion: string | null;
  tags: Record<string, string>;
  online: boolean;
  heartbeatIntervalSeconds: number;
  createdAt: string;
  registeredAt: string | null;
  lastSeenAt: string | null;
  decommissionedAt: string | null;
}

export interface DeviceDetail extends DeviceSummary {
  hardware: Record<string, unknown> | null;
  capabilities: Array<Record<string, unknown>>;
  installed: Array<{ name: string; kind: string; version: string; sha256: string; state: string; updatedAt: string }>;
  history: Array<{
    sequence: number;
    assignmentId: string;
    rolloutId: string | null;
    artifact: { name: string; version: string };
    state: string;
    reason: string;
    bytesDone: number;
    bytesTotal: number;
    deviceTime: string;
    receivedAt: string;
  }>;
}

/** An enrollment token as listed: never the token itself. */
export interface EnrollmentToken {
  id: string;
  fleet: string;
  deviceName: string | null;
  usesTotal: number;
  usesLeft: number;
  createdAt: string;
  createdBy: string;
  expiresAt: string;
  status: string;
}

export interface LogRequest {
  id: string;
  fleet: string;
  device: string;
  since: string | null;
  until: string | null;
  maxBytes: number;
  requestedAt: string;
  requestedBy: string;
  status: 'pending' | 'fulfilled';
  fulfilledAt: string | null;
  sizeBytes: number | null;
  sha256: string | null;
}

export interface Artifact {
  name: string;
  version: string;
  kind: string;
  fileName: string;
  targetPath: string;
  sha256: string;
  length: number;
  spec: Record<string, unknown>;
  manifest: Record<string, unknown> | null;
  createdAt: string;
  /** The fleet it belongs to, or `*` for every fleet. */
  fleet: string;
}

export interface WithdrawnArtifact {
  name: string;
  version: string;
  fleet: string;
  targetPath: string;
  withdrawnAt: string;
}

export interface Group {
  fleet: string;
  name: string;
  devices: string[];
  unresolved: string[];
}

export interface Wave {
  index: number;
  percent: number;
  approval: 'auto' | 'manual';
  status: 'pending' | 'active' | 'complete';
  devices: number;
  counts: Record<string, number>;
  startedAt?: string | null;
  startedBy?: string | null;
}

export interface RolloutDevice {
  name: string;
  wave: number;
  state: string;
  reason: string;
  assignedAt: string | null;
  updatedAt: string | null;
  previousVersion?: string | null;
  revert?: { toVersion: string | null; state: string | null; note: string | null; at: string } | null;
  decommissioned?: boolean;
}

export interface Rollout {
  id: string;
  fleet: string;
  status: 'running' | 'waiting_approval' | 'halted' | 'completed' | 'aborted';
  artifact: { name: string; version: string; kind: string };
  group: string;
  probe: { type: string; spec: Record<string, unknown>; timeoutSeconds?: number; attempts?: number; initialDelaySeconds?: number };
  strategy: { waves: Array<{ percent: number; approval: string }>; max_failure_rate?: number };
  currentWave: number;
  halt: { reason: string; wave: number; failures: number; tolerance: number; at: string } | null;
  acknowledgedFailures?: number;
  abortPolicy: 'keep' | 'revert' | null;
  counts: Record<string, number>;
  waves: Wave[];
  devices?: RolloutDevice[];
  createdBy?: string;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string | null;
}

export interface AuditEvent {
  seq: number;
  at: string;
  actor: string;
  action: string;
  subject: string;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

/** The audit chain check (`GET /audit/verify`, and the last line of an export). */
export interface ChainStatus {
  count: number;
  verified: boolean;
  headHash: string;
  firstBrokenSeq?: number;
  problem?: string;
}
