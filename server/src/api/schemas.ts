// JSON Schemas shared by the routes: errors, pagination, and the resources several routes
// return. Response schemas drive serialization (fast-json-stringify drops what a schema does
// not list), so every field the contract promises is listed, and open objects (specs, probes,
// hardware, audit details) say `additionalProperties: true`.
import type { JsonSchema } from '@meshanics/core/contract';

export const MAX_PAGE_SIZE = 200;
/** Far beyond any real listing, small enough to stay a safe integer through SQL and JSON. */
export const MAX_PAGE_OFFSET = 1_000_000_000;
export const DEFAULT_PAGE_SIZE = 50;

export const DNS_LABEL_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';

export const str = { type: 'string' } as const;
export const int = { type: 'integer' } as const;
export const bool = { type: 'boolean' } as const;
export const nullableStr = { type: ['string', 'null'] } as const;
export const nullableInt = { type: ['integer', 'null'] } as const;
export const openObject = { type: 'object', additionalProperties: true } as const;
export const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;

export const errorSchema: JsonSchema = {
  type: 'object',
  description: 'Every error a route answers: a message naming what is wrong, and the stable code of the server error table (docs/operator-api.md)',
  required: ['error', 'code'],
  properties: { error: str, code: { type: 'string', pattern: '^MESH_ERR_[A-Z0-9_]+$' } },
};

/** Error responses a route documents (the error handler answers them all as `{ error, code }`). */
export function errors(...codes: number[]): Record<number, JsonSchema> {
  return Object.fromEntries(codes.map((c) => [c, errorSchema]));
}

/** The error answers every authenticated route may give (429: too many failed key attempts from the address). */
export const AUTH_ERRORS = [400, 401, 403, 429] as const;

export const pageQuery = {
  limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE },
  // Bounded so a huge or non-finite value is a 400, never a number SQLite or the serializer chokes on.
  offset: { type: 'integer', minimum: 0, maximum: MAX_PAGE_OFFSET, default: 0 },
} as const;

export function pageOf(item: JsonSchema): JsonSchema {
  return {
    type: 'object',
    required: ['items', 'total', 'limit', 'offset'],
    properties: { items: { type: 'array', items: item }, total: int, limit: int, offset: int },
  };
}

export interface PageQuery {
  limit: number;
  offset: number;
}

export interface PageResult<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

/** Pages an in-memory list (for sources that are small and have no SQL listing). */
export function paginate<T>(all: readonly T[], page: PageQuery): PageResult<T> {
  return { items: all.slice(page.offset, page.offset + page.limit), total: all.length, limit: page.limit, offset: page.offset };
}

export function objectOf(properties: Record<string, unknown>, required: string[] = Object.keys(properties)): JsonSchema {
  return { type: 'object', required, properties };
}

export const deviceSummarySchema = objectOf({
  fleet: str,
  name: str,
  spiffeId: str,
  agentVersion: nullableStr,
  tags: stringMap,
  online: bool,
  heartbeatIntervalSeconds: int,
  createdAt: str,
  registeredAt: nullableStr,
  lastSeenAt: nullableStr,
  decommissionedAt: nullableStr,
});

export const installedSchema = objectOf({ name: str, kind: str, version: str, sha256: str, state: str, updatedAt: str });

export const historySchema = objectOf({
  sequence: int,
  assignmentId: str,
  rolloutId: nullableStr,
  artifact: objectOf({ name: str, version: str }),
  state: str,
  reason: str,
  bytesDone: int,
  bytesTotal: int,
  deviceTime: str,
  receivedAt: str,
});

export const deviceDetailSchema: JsonSchema = {
  type: 'object',
  required: [...(deviceSummarySchema.required as string[]), 'hardware', 'capabilities', 'installed', 'history'],
  properties: {
    ...(deviceSummarySchema.properties as Record<string, unknown>),
    hardware: { type: ['object', 'null'], additionalProperties: true },
    capabilities: { type: 'array', items: openObject },
    installed: { type: 'array', items: installedSchema },
    history: { type: 'array', items: historySchema, description: 'status reports, newest first (capped)' },
  },
};

export const enrollmentTokenViewSchema = objectOf({
  id: str,
  fleet: str,
  deviceName: nullableStr,
  usesTotal: int,
  usesLeft: int,
  createdAt: str,
  createdBy: str,
  expiresAt: str,
  revokedAt: nullableStr,
  revokedBy: nullableStr,
  status: { type: 'string', enum: ['active', 'revoked', 'expired', 'exhausted'] },
});

export const logRequestViewSchema = objectOf({
  id: str,
  fleet: str,
  device: str,
  since: nullableStr,
  until: nullableStr,
  maxBytes: int,
  requestedAt: str,
  requestedBy: str,
  status: { type: 'string', enum: ['pending', 'fulfilled'] },
  fulfilledAt: nullableStr,
  sizeBytes: nullableInt,
  sha256: nullableStr,
});

/** The owner of an artifact: a fleet name, or `*` for every fleet (catalog/tenancy.ts). */
const artifactFleet = { type: 'string', description: 'the fleet the artifact belongs to, or * for every fleet' } as const;

export const publishedArtifactSchema = objectOf({ name: str, version: str, kind: str, targetPath: str, sha256: str, length: int, fleet: artifactFleet });

export const withdrawnArtifactSchema = objectOf({ name: str, version: str, fleet: artifactFleet, targetPath: str, withdrawnAt: str });

export const artifactViewSchema = objectOf({
  name: str,
  version: str,
  kind: str,
  fileName: str,
  targetPath: str,
  sha256: str,
  length: int,
  spec: openObject,
  manifest: { type: ['object', 'null'], additionalProperties: true },
  createdAt: str,
  fleet: artifactFleet,
});

export const groupSchema: JsonSchema = {
  type: 'object',
  required: ['fleet', 'name', 'devices', 'unresolved'],
  additionalProperties: true,
  properties: {
    fleet: str,
    name: str,
    devices: { type: 'array', items: str, description: 'device names that resolve to a device of the fleet' },
    unresolved: { type: 'array', items: str, description: 'names given that match no device of the fleet (never dropped silently)' },
  },
};

const stateCounts = { type: 'object', additionalProperties: { type: 'integer' } } as const;

const assignmentStates = { type: 'string', enum: ['PENDING', 'DOWNLOADING', 'VERIFYING', 'APPLYING', 'HEALTHY', 'ROLLED_BACK', 'FAILED'] } as const;
const nullableAssignmentState = { type: ['string', 'null'], enum: [...assignmentStates.enum, null] } as const;

const rolloutWaveSchema = objectOf({
  index: int,
  percent: { type: 'number' },
  approval: { type: 'string', enum: ['auto', 'manual'] },
  status: { type: 'string', enum: ['pending', 'active', 'complete'] },
  devices: int,
  counts: stateCounts,
  startedAt: nullableStr,
  startedBy: nullableStr,
});

const rolloutDeviceSchema = objectOf({
  name: str,
  wave: int,
  state: assignmentStates,
  reason: str,
  assignedAt: nullableStr,
  updatedAt: nullableStr,
  assignmentId: nullableStr,
  previousVersion: nullableStr,
  revert: {
    type: ['object', 'null'],
    required: ['toVersion', 'assignmentId', 'state', 'note', 'at'],
    properties: { toVersion: nullableStr, assignmentId: nullableStr, state: nullableAssignmentState, note: nullableStr, at: str },
  },
  decommissioned: bool,
});

// Every field the engine's summary holds (rollouts/detail.ts): the generated REST types of the
// CLI and the console are read off this schema, so it says what is always there.
const rolloutSummaryProperties = {
  id: str,
  fleet: str,
  status: { type: 'string', enum: ['running', 'waiting_approval', 'halted', 'completed', 'aborted'] },
  artifact: objectOf({ name: str, version: str, kind: str }),
  group: str,
  probe: objectOf({ type: str, spec: openObject, timeoutSeconds: int, attempts: int, initialDelaySeconds: int }),
  strategy: objectOf({
    waves: { type: 'array', items: objectOf({ percent: { type: 'number' }, approval: { type: 'string', enum: ['auto', 'manual'] } }) },
    max_failure_rate: { type: 'number' },
  }),
  currentWave: int,
  halt: {
    type: ['object', 'null'],
    required: ['reason', 'wave', 'failures', 'acknowledged', 'targeted', 'tolerance', 'at'],
    properties: { reason: str, wave: int, failures: int, acknowledged: int, targeted: int, tolerance: { type: 'number' }, at: str },
  },
  acknowledgedFailures: int,
  abortPolicy: { type: ['string', 'null'], enum: ['keep', 'revert', null] },
  counts: stateCounts,
  waves: { type: 'array', items: rolloutWaveSchema },
  createdBy: str,
  createdAt: str,
  updatedAt: str,
  finishedAt: nullableStr,
};

export const rolloutSummarySchema: JsonSchema = objectOf(rolloutSummaryProperties);

export const rolloutDetailSchema: JsonSchema = objectOf({
  ...rolloutSummaryProperties,
  devices: { type: 'array', items: rolloutDeviceSchema },
});

/** What an action answers: the detail, or with ?view=summary the summary (no `devices`). */
export const rolloutAnswerSchema: JsonSchema = objectOf(
  { ...rolloutSummaryProperties, devices: { type: 'array', items: rolloutDeviceSchema } },
  Object.keys(rolloutSummaryProperties),
);

/** Most devices one page of GET /rollouts/:id/devices holds. */
export const MAX_ROLLOUT_DEVICES_PAGE = 1000;

export const rolloutDevicesQuery = {
  limit: { type: 'integer', minimum: 1, maximum: MAX_ROLLOUT_DEVICES_PAGE, default: 200 },
  after: { type: 'integer', minimum: 0, maximum: 2_147_483_647, description: 'the `next` of the previous page; absent for the first page' },
  wave: { type: 'integer', minimum: 0, maximum: 19, description: 'only the devices of this wave (0-based; a strategy has at most 20)' },
  state: { ...assignmentStates, description: 'only the devices showing this state' },
} as const;

export const rolloutDevicesPageSchema: JsonSchema = objectOf({
  items: { type: 'array', items: rolloutDeviceSchema },
  next: { type: ['integer', 'null'], description: 'the `after` of the next page; null on the last page' },
});

export const auditEventSchema = objectOf({
  seq: int,
  at: str,
  actor: str,
  action: str,
  subject: str,
  details: openObject,
  prevHash: str,
  hash: str,
});

export const chainVerificationSchema = objectOf({ count: int, verified: bool, headHash: str, firstBrokenSeq: int, problem: str }, ['count', 'verified', 'headHash']);
