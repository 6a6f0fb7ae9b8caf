// Store records and repositories of the operator REST API (migration 4): API keys, and the
// paginated read models its listings need (devices, device history, the artifact catalog).
import type { ArtifactRecord, DeviceRecord } from './store.js';

export interface ApiKeyRecord {
  id: string;
  /** Unique among live keys; the actor the audit trail names for this key's actions. */
  name: string;
  /** Hex sha256 of the key text; the key itself is never stored. */
  keySha256: string;
  /** A fleet name, or `*` for every fleet. */
  fleet: string;
  /** `<area>.<level>` entries as given at creation (normalized, sorted). */
  permissions: string[];
  /** The separate right to approve a manual wave and resume a halted rollout. */
  approve: boolean;
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
  revokedBy: string | null;
}

export interface ApiKeyStore {
  /** False (nothing written) when a live key already has this name. */
  insert(key: ApiKeyRecord): Promise<boolean>;
  get(id: string): Promise<ApiKeyRecord | undefined>;
  getByHash(keySha256: string): Promise<ApiKeyRecord | undefined>;
  list(): Promise<ApiKeyRecord[]>;
  /** Sets revoked_at unless already set; false when already revoked or unknown. */
  revoke(id: string, now: string, actor: string): Promise<boolean>;
  /** Live (unrevoked) keys. */
  countLive(): Promise<number>;
}

export interface Page {
  limit: number;
  offset: number;
}

export interface DeviceListFilter {
  fleet?: string;
  /** Every pair must match the device's tags. */
  tags?: Array<[string, string]>;
  online?: boolean;
  /** The interval of a device that has none of its own. */
  defaultHeartbeatIntervalSeconds: number;
  /** "Now" for the online computation (ISO 8601). */
  now: string;
}

/** A device row with the online flag computed by the same query that filters on it. */
export interface DeviceListRow {
  device: DeviceRecord;
  online: boolean;
}

/** One status report of a device, with the assignment and artifact it was about. */
export interface DeviceHistoryRecord {
  sequence: number;
  assignmentId: string;
  rolloutId: string | null;
  artifactName: string;
  artifactVersion: string;
  state: string;
  reason: string;
  bytesDone: number;
  bytesTotal: number;
  deviceTime: string;
  receivedAt: string;
}

export interface OperatorViewStore {
  listDevices(filter: DeviceListFilter, page: Page): Promise<{ rows: DeviceListRow[]; total: number }>;
  /** The online flag of one device, computed exactly as listDevices does. */
  isOnline(deviceId: string, defaultHeartbeatIntervalSeconds: number, now: string): Promise<boolean>;
  /** Status reports of the device, newest first. */
  listDeviceHistory(deviceId: string, limit: number): Promise<DeviceHistoryRecord[]>;
  /**
   * Published (not withdrawn) versions. `visibleTo`: only those a key of this fleet may see,
   * the fleet's own and every fleet's (`*`); `fleet`: only those owned by exactly this one.
   */
  listArtifacts(filter: { name?: string; kind?: string; fleet?: string; visibleTo?: string }, page: Page): Promise<{ rows: ArtifactRecord[]; total: number }>;
}
