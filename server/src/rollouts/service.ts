// Operator actions on rollouts: create, read, approve, resume, abort. Each action is one
// write transaction that also runs the progression step, so its effect (a wave that starts,
// a rollout that completes) is visible as soon as it returns.
import * as crypto from 'node:crypto';
import { validateProbe, type ProbeInput } from '../fleet/assignments.js';
import { MeshError, nameSome } from '../errors.js';
import { resolveGroupDevices } from '../fleet/groups.js';
import { assertDevicesFitArtifact, assertDevicesSupportKind } from '../fleet/device-capabilities.js';
import { assertAssignable } from '../catalog/tenancy.js';
import type { RolloutDevicePage, RolloutRecord, RolloutStatusValue } from '../store/index.js';
import { revertDevices } from './abort-revert.js';
import { auditedList } from './audited-devices.js';
import { buildRolloutDetail, buildRolloutDevicesPage, type RolloutDetail, type RolloutDevicesPage, type RolloutSummary } from './detail.js';
import { rolloutSubject, startWave, stepRollout, type EngineContext } from './engine.js';
import { failureCount } from './progress.js';
import { cumulativeCounts, parseStrategy } from './strategy.js';
import { planWaves } from './wave-plan.js';

export const ROLLOUT_STATUSES: readonly RolloutStatusValue[] = ['running', 'waiting_approval', 'halted', 'completed', 'aborted'];
/** Rollouts in these states hold their devices: a device is in at most one per artifact name. */
export const ACTIVE_ROLLOUT_STATUSES: readonly RolloutStatusValue[] = ['running', 'waiting_approval', 'halted'];
export const ABORT_POLICIES = ['keep', 'revert'] as const;
export type AbortPolicy = (typeof ABORT_POLICIES)[number];

export interface CreateRolloutInput {
  fleet: string;
  artifact: { name: string; version: string };
  /** Name of a static group of the fleet. */
  group: string;
  probe: ProbeInput;
  /** `{ waves: [{ percent, approval }], max_failure_rate }`; absent means one wave of 100%. */
  strategy?: unknown;
  actor: string;
}

type RolloutContext = EngineContext;

async function load(ctx: RolloutContext, id: string): Promise<RolloutRecord> {
  const rollout = await ctx.store.rollouts.get(id);
  if (!rollout) throw new MeshError('MESH_ERR_ROLLOUT_NOT_FOUND', `no rollout ${id}`);
  return rollout;
}

/**
 * The rollout, locked for the caller's decision (approve, resume, abort) until its transaction
 * ends: rollout steps of other replicas take no global lock, only this row's.
 */
async function loadForDecision(ctx: RolloutContext, id: string): Promise<RolloutRecord> {
  const rollout = await ctx.store.rollouts.lockForDecision(id);
  if (!rollout) throw new MeshError('MESH_ERR_ROLLOUT_NOT_FOUND', `no rollout ${id}`);
  return rollout;
}

async function detail(ctx: RolloutContext, id: string): Promise<RolloutDetail> {
  return (await buildRolloutDetail(ctx, await load(ctx, id), true)) as RolloutDetail;
}

/** The rollout without its per-device list: counts from one aggregate, not a row per device. */
export async function getRolloutSummary(ctx: RolloutContext, id: string): Promise<RolloutSummary> {
  return buildRolloutDetail(ctx, await load(ctx, id), false);
}

/** One page of the rollout's devices (store.rollouts.listDevices with a page). */
export async function getRolloutDevices(ctx: RolloutContext, id: string, page: RolloutDevicePage): Promise<RolloutDevicesPage> {
  return buildRolloutDevicesPage(ctx, await load(ctx, id), page);
}

function requireStatus(rollout: RolloutRecord, allowed: readonly RolloutStatusValue[], action: string): void {
  if (!allowed.includes(rollout.status)) {
    throw new MeshError('MESH_ERR_ROLLOUT_INVALID_STATE', `cannot ${action} rollout ${rollout.id}: it is ${rollout.status} (${action} needs ${allowed.join(' or ')})`, {
      details: { status: rollout.status },
    });
  }
}

/** A new rollout, running from its first wave with no failure acknowledged, halt or abort policy: the record createRollout stores. */
export function newRolloutRecord(fields: Pick<RolloutRecord, 'fleet' | 'artifactId' | 'artifactName' | 'group' | 'probe' | 'strategy' | 'createdBy'>, now: string): RolloutRecord {
  return {
    id: crypto.randomUUID(),
    fleet: fields.fleet,
    artifactId: fields.artifactId,
    artifactName: fields.artifactName,
    group: fields.group,
    probe: fields.probe,
    strategy: fields.strategy,
    status: 'running',
    currentWave: 0,
    acknowledgedFailures: 0,
    halt: null,
    abortPolicy: null,
    createdBy: fields.createdBy,
    createdAt: now,
    updatedAt: now,
    finishedAt: null,
  };
}

export async function createRollout(ctx: RolloutContext, input: CreateRolloutInput): Promise<RolloutDetail> {
  const parsed = parseStrategy(input.strategy);
  if (!parsed.ok) {
    throw new MeshError('MESH_ERR_ROLLOUT_INVALID_STRATEGY', `invalid strategy: ${parsed.errors.join('; ')}`, { details: { errors: parsed.errors } });
  }
  const strategy = parsed.strategy;
  if (typeof input.fleet !== 'string' || input.fleet === '') throw new MeshError('MESH_ERR_ROLLOUT_INVALID', 'fleet is required');
  if (typeof input.group !== 'string' || input.group === '') throw new MeshError('MESH_ERR_ROLLOUT_INVALID', 'group is required');
  if (!input.artifact || typeof input.artifact.name !== 'string' || typeof input.artifact.version !== 'string') {
    throw new MeshError('MESH_ERR_ROLLOUT_INVALID', 'artifact must be { name, version }');
  }
  if (!input.probe || typeof input.probe.type !== 'string') throw new MeshError('MESH_ERR_ROLLOUT_INVALID', 'probe/type is required');
  const probe = validateProbe(input.probe);
  const { store } = ctx;

  const id = await store.withWriteLock(async () => {
    const group = await store.groups.get(input.fleet, input.group);
    if (!group) throw new MeshError('MESH_ERR_GROUP_NOT_FOUND', `no group "${input.group}" in fleet ${input.fleet}`);
    // Every device of the rollout is of input.fleet (resolveGroupDevices): the artifact must be theirs to use.
    const artifact = assertAssignable(await store.getArtifact(input.artifact.name, input.artifact.version), input.artifact, input.fleet);
    const { devices, unresolved } = await resolveGroupDevices(ctx, input.fleet, group.devices);
    if (devices.length === 0) {
      throw new MeshError(
        'MESH_ERR_ROLLOUT_NO_DEVICES',
        `group "${input.group}" resolves to no device of fleet ${input.fleet}` + (unresolved.length > 0 ? ` (unresolved: ${nameSome(unresolved)})` : ''),
        { details: { unresolved } },
      );
    }
    assertDevicesSupportKind(devices, artifact.kind);
    assertDevicesFitArtifact(devices, artifact);
    const busy = await store.rollouts.busyDevices(
      devices.map((d) => d.id),
      artifact.name,
    );
    if (busy.length > 0) {
      const nameOf = new Map(devices.map((d) => [d.id, d.name]));
      const names = busy.map((b) => nameOf.get(b.deviceId)!);
      const rollouts = [...new Set(busy.map((b) => b.rolloutId))];
      throw new MeshError('MESH_ERR_ROLLOUT_DEVICE_BUSY', `device(s) ${nameSome(names)} already in an active rollout of "${artifact.name}" (${nameSome(rollouts)})`, {
        details: { devices: names, rollouts },
      });
    }
    const now = new Date().toISOString();
    const rollout = newRolloutRecord(
      { fleet: input.fleet, artifactId: artifact.id, artifactName: artifact.name, group: input.group, probe, strategy, createdBy: input.actor },
      now,
    );
    // The split is computed once, in a stable order, and stored.
    const plan = planWaves(
      rollout.id,
      devices.map((d) => d.id),
      strategy,
    );
    await store.rollouts.insert(rollout, plan);
    await store.appendAudit({
      at: now,
      actor: input.actor,
      action: 'rollout.created',
      subject: rolloutSubject(rollout.id),
      details: {
        fleet: input.fleet,
        artifact: `${artifact.name}@${artifact.version}`,
        group: input.group,
        strategy,
        probe,
        devices: devices.length,
        waveSizes: cumulativeCounts(strategy, devices.length).map((c, i, all) => c - (i > 0 ? all[i - 1]! : 0)),
        ...(unresolved.length > 0 ? auditedList('unresolved', unresolved) : {}),
      },
    });
    // Creating the rollout starts its first wave (whatever its approval says).
    await startWave(store, rollout, 0, input.actor, now);
    await stepRollout(ctx, rollout.id);
    return rollout.id;
  });
  ctx.logger.info({ rolloutId: id, artifact: `${input.artifact.name}@${input.artifact.version}`, group: input.group }, 'rollout created');
  return detail(ctx, id);
}

export function getRollout(ctx: RolloutContext, id: string): Promise<RolloutDetail> {
  return detail(ctx, id);
}

export async function listRollouts(
  ctx: RolloutContext,
  filter: { fleet?: string; status?: RolloutStatusValue; limit?: number; offset?: number } = {},
): Promise<{ items: RolloutSummary[]; total: number }> {
  if (filter.status !== undefined && !ROLLOUT_STATUSES.includes(filter.status)) {
    throw new MeshError('MESH_ERR_ROLLOUT_INVALID', `status must be one of ${ROLLOUT_STATUSES.join(', ')}`);
  }
  const limit = filter.limit ?? 50;
  const offset = filter.offset ?? 0;
  if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw new MeshError('MESH_ERR_ROLLOUT_INVALID', 'limit must be 1-200');
  if (!Number.isInteger(offset) || offset < 0) throw new MeshError('MESH_ERR_ROLLOUT_INVALID', 'offset must be >= 0');
  const page = await ctx.store.rollouts.list({
    ...(filter.fleet !== undefined ? { fleet: filter.fleet } : {}),
    ...(filter.status !== undefined ? { status: filter.status } : {}),
    limit,
    offset,
  });
  const items: RolloutSummary[] = [];
  for (const r of page.items) items.push(await buildRolloutDetail(ctx, r, false));
  return { items, total: page.total };
}

/** What an action answers: the whole detail, or (for rollouts of many devices) the summary. */
export type RolloutView = 'detail' | 'summary';

function answer(ctx: RolloutContext, id: string, view: RolloutView): Promise<RolloutDetail | RolloutSummary> {
  return view === 'summary' ? getRolloutSummary(ctx, id) : detail(ctx, id);
}

/** Starts the wave that waits for approval (the approve right is the caller's to check). */
export async function approveRollout(ctx: RolloutContext, id: string, actor: string): Promise<RolloutDetail>;
export async function approveRollout(ctx: RolloutContext, id: string, actor: string, view: RolloutView): Promise<RolloutDetail | RolloutSummary>;
export async function approveRollout(ctx: RolloutContext, id: string, actor: string, view: RolloutView = 'detail'): Promise<RolloutDetail | RolloutSummary> {
  const { store } = ctx;
  await store.withWriteLock(async () => {
    const rollout = await loadForDecision(ctx, id);
    requireStatus(rollout, ['waiting_approval'], 'approve');
    const wave = rollout.currentWave + 1;
    const now = new Date().toISOString();
    await store.appendAudit({ at: now, actor, action: 'rollout.approved', subject: rolloutSubject(id), details: { wave } });
    await store.rollouts.update(id, { status: 'running', currentWave: wave }, now);
    await startWave(store, { ...rollout, status: 'running', currentWave: wave }, wave, actor, now);
    await stepRollout(ctx, id);
  });
  ctx.logger.info({ rolloutId: id, actor }, 'rollout wave approved');
  return answer(ctx, id, view);
}

/** Resumes a halted rollout; the failures seen so far are acknowledged, only new ones can halt it again. */
export async function resumeRollout(ctx: RolloutContext, id: string, actor: string): Promise<RolloutDetail>;
export async function resumeRollout(ctx: RolloutContext, id: string, actor: string, view: RolloutView): Promise<RolloutDetail | RolloutSummary>;
export async function resumeRollout(ctx: RolloutContext, id: string, actor: string, view: RolloutView = 'detail'): Promise<RolloutDetail | RolloutSummary> {
  const { store } = ctx;
  await store.withWriteLock(async () => {
    const rollout = await loadForDecision(ctx, id);
    requireStatus(rollout, ['halted'], 'resume');
    const failures = failureCount(await store.rollouts.progress(id, rollout.currentWave));
    const now = new Date().toISOString();
    await store.rollouts.update(id, { status: 'running', acknowledgedFailures: failures, halt: null }, now);
    await store.appendAudit({
      at: now,
      actor,
      action: 'rollout.resumed',
      subject: rolloutSubject(id),
      details: { acknowledgedFailures: failures, wave: rollout.currentWave, halt: rollout.halt },
    });
    await stepRollout(ctx, id);
  });
  ctx.logger.info({ rolloutId: id, actor }, 'rollout resumed');
  return answer(ctx, id, view);
}

/**
 * Aborts a running (or waiting) or halted rollout. keep: assignments no device has started
 * are withdrawn and nothing progresses any more. revert: in addition, every device whose
 * assignment reached HEALTHY or is mid-update gets an assignment back to what it had
 * installed when its wave started (an unreachable device picks it up at its next heartbeat).
 */
export async function abortRollout(ctx: RolloutContext, id: string, options: { policy?: AbortPolicy }, actor: string): Promise<RolloutDetail>;
export async function abortRollout(ctx: RolloutContext, id: string, options: { policy?: AbortPolicy }, actor: string, view: RolloutView): Promise<RolloutDetail | RolloutSummary>;
export async function abortRollout(
  ctx: RolloutContext,
  id: string,
  options: { policy?: AbortPolicy },
  actor: string,
  view: RolloutView = 'detail',
): Promise<RolloutDetail | RolloutSummary> {
  const policy = options?.policy ?? 'keep';
  if (!ABORT_POLICIES.includes(policy)) {
    throw new MeshError('MESH_ERR_ROLLOUT_INVALID', `policy must be one of ${ABORT_POLICIES.join(', ')}, got ${JSON.stringify(policy)}`);
  }
  const { store } = ctx;
  await store.withWriteLock(async () => {
    const rollout = await loadForDecision(ctx, id);
    requireStatus(rollout, ['running', 'waiting_approval', 'halted'], 'abort');
    const now = new Date().toISOString();
    // Before any row of them is written (a revert writes to many): row-locks.ts order.
    if (policy === 'revert') await store.rollouts.lockDevices(id);
    const withdrawn = await store.rollouts.deactivatePendingAssignments(id, now);
    const { reverted, notReverted } = policy === 'revert' ? await revertDevices(store, rollout, now) : { reverted: [], notReverted: [] };
    await store.rollouts.update(id, { status: 'aborted', abortPolicy: policy, finishedAt: now }, now);
    await store.rollouts.releaseDevices(id);
    await store.appendAudit({
      at: now,
      actor,
      action: 'rollout.aborted',
      subject: rolloutSubject(id),
      details: {
        policy,
        fromStatus: rollout.status,
        wave: rollout.currentWave,
        withdrawnAssignments: withdrawn.length,
        ...(policy === 'revert' ? { ...auditedList('reverted', reverted), ...auditedList('notReverted', notReverted) } : {}),
      },
    });
  });
  ctx.logger.info({ rolloutId: id, actor, policy }, 'rollout aborted');
  return answer(ctx, id, view);
}
