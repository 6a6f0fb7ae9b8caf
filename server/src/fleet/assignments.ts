// fleet/ owns the devices and what each is given: device lifecycle (devices.ts: issue a certificate, decommission),
// static groups (groups.ts), assignments of an artifact version with its probe (this file) and the artifact kinds a
// device advertised (device-capabilities.ts).
// May import: store/ (types), pki/ (certificates), catalog/plugin-schemas.ts (probe specs), config/, ../errors.ts,
// @meshanics/core/contract. Never api/, device-api/ or rollouts/ (rollouts/ builds on fleet/, not the other way).
//
// Assigning an artifact version to one device, with the health probe that guards its swap.
import { assertDevicesFitArtifact, assertDevicesSupportKind } from './device-capabilities.js';
import * as crypto from 'node:crypto';
import { compileSchema, parseAndValidate, PROBE_COMMON_SCHEMA, type ProbeContract } from '@meshanics/core/contract';
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import { knownProbeTypes, probeSpecValidator } from '../catalog/plugin-schemas.js';
import { assertAssignable } from '../catalog/tenancy.js';
import type { AssignmentRecord, AssignmentState, ProbeRecord, StatusReportRecord } from '../store/index.js';

import { PROBE_DEFAULTS } from '../config/defaults.js';

export { PROBE_DEFAULTS };

export interface ProbeInput {
  type: string;
  /** The probe type's spec, as an object or JSON text. */
  spec?: Record<string, unknown> | string;
  timeoutSeconds?: number;
  attempts?: number;
  initialDelaySeconds?: number;
}

export interface CreateAssignmentInput {
  fleet: string;
  /** The device's name within the fleet. */
  device: string;
  /** Artifact name. */
  artifact: string;
  version: string;
  probe: ProbeInput;
  rolloutId?: string;
  actor?: string;
}

export interface CreatedAssignment {
  assignmentId: string;
  /** Active assignments for the same artifact name on this device that this one replaced. */
  superseded: string[];
}

const probeCommon = compileSchema<ProbeContract>(PROBE_COMMON_SCHEMA, 'probe');

/** Validates a probe with the common probe schema and its type's plugin schema; fills the defaults. */
export function validateProbe(input: ProbeInput): ProbeRecord {
  const common = probeCommon({
    type: input.type,
    timeoutSeconds: input.timeoutSeconds ?? PROBE_DEFAULTS.timeoutSeconds,
    attempts: input.attempts ?? PROBE_DEFAULTS.attempts,
    initialDelaySeconds: input.initialDelaySeconds ?? PROBE_DEFAULTS.initialDelaySeconds,
  });
  if (!common.ok) {
    throw new MeshError('MESH_ERR_PROBE_INVALID', `invalid probe: ${common.errors.join('; ')}`, { details: { errors: common.errors } });
  }
  const validator = probeSpecValidator(input.type);
  if (!validator) {
    throw new MeshError('MESH_ERR_PROBE_UNKNOWN_TYPE', `unknown probe type "${input.type}" (known: ${knownProbeTypes().join(', ')})`);
  }
  const spec = typeof input.spec === 'string' ? parseAndValidate(input.spec, validator, 'probe/spec') : validator(input.spec ?? {});
  if (!spec.ok) {
    throw new MeshError('MESH_ERR_PROBE_INVALID', `invalid ${input.type} probe: ${spec.errors.join('; ')}`, {
      details: { errors: spec.errors },
    });
  }
  const { type, timeoutSeconds, attempts, initialDelaySeconds } = common.value;
  return { type, spec: spec.value, timeoutSeconds, attempts, initialDelaySeconds };
}

export async function createAssignment(ctx: MeshanicsContext, input: CreateAssignmentInput): Promise<CreatedAssignment> {
  const probe = validateProbe(input.probe);
  const { store } = ctx;
  return await store.withWriteLock(async () => {
    const device = await store.getDeviceByName(input.fleet, input.device);
    if (!device) {
      throw new MeshError('MESH_ERR_DEVICE_NOT_FOUND', `no device ${input.fleet}/${input.device} (issue its certificate first)`);
    }
    if (device.decommissionedAt) {
      throw new MeshError('MESH_ERR_DEVICE_DECOMMISSIONED', `device ${input.fleet}/${input.device} is decommissioned`);
    }
    const artifact = assertAssignable(await store.getArtifact(input.artifact, input.version), { name: input.artifact, version: input.version }, device.fleet);
    assertDevicesSupportKind([device], artifact.kind);
    assertDevicesFitArtifact([device], artifact);
    const now = new Date().toISOString();
    const record: AssignmentRecord = {
      id: crypto.randomUUID(),
      deviceId: device.id,
      artifactId: artifact.id,
      artifactName: artifact.name,
      rolloutId: input.rolloutId ?? null,
      probe,
      state: 'PENDING',
      reason: '',
      active: true,
      createdAt: now,
      updatedAt: now,
    };
    const superseded = await store.insertAssignment(record);
    await store.appendAudit({
      at: now,
      actor: input.actor ?? 'operator',
      action: 'assignment.created',
      subject: `assignment:${record.id}`,
      details: { device: device.spiffeId, artifact: `${artifact.name}@${artifact.version}`, probe, superseded },
    });
    ctx.logger.info({ assignmentId: record.id, device: device.spiffeId, artifact: artifact.name, version: artifact.version }, 'assignment created');
    return { assignmentId: record.id, superseded };
  });
}

export interface AssignmentView {
  id: string;
  fleet: string;
  device: string;
  artifact: { name: string; version: string; kind: string; targetPath: string; sha256: string; length: number };
  rolloutId: string | null;
  probe: ProbeRecord;
  active: boolean;
  createdAt: string;
  updatedAt: string;
}

export interface AssignmentDetail {
  assignment: AssignmentView;
  state: AssignmentState;
  reason: string;
  reports: Omit<StatusReportRecord, 'deviceId' | 'assignmentId'>[];
}

export async function getAssignment(ctx: MeshanicsContext, id: string): Promise<AssignmentDetail> {
  const { store } = ctx;
  const a = await store.getAssignment(id);
  const device = a && (await store.getDeviceById(a.deviceId));
  const artifact = a && (await store.getArtifactById(a.artifactId));
  if (!a || !device || !artifact) throw new MeshError('MESH_ERR_ASSIGNMENT_NOT_FOUND', `no assignment ${id}`);
  return {
    assignment: {
      id: a.id,
      fleet: device.fleet,
      device: device.name,
      artifact: {
        name: artifact.name,
        version: artifact.version,
        kind: artifact.kind,
        targetPath: artifact.targetPath,
        sha256: artifact.sha256,
        length: artifact.length,
      },
      rolloutId: a.rolloutId,
      probe: a.probe,
      active: a.active,
      createdAt: a.createdAt,
      updatedAt: a.updatedAt,
    },
    state: a.state,
    reason: a.reason,
    reports: (await store.listStatusReports(id)).map(({ deviceId: _d, assignmentId: _a, ...rest }) => rest),
  };
}
