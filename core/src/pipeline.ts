// One assignment through the stages:
//   validate (schemas, then every plugin's allowlist checks) -> DOWNLOADING -> VERIFYING -> APPLYING -> probe -> HEALTHY
//                                                            \-> ROLLED_BACK (every attempt failed)
//   any failure before the swap, or a failed apply            -> FAILED (nothing changed)
// Every phase is recorded in the in-flight journal before it starts, so an agent restarted at
// any point knows what to undo (recovery.ts).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Agent } from './agent.js';
import type { Assignment } from './assignment.js';
import { isDiskFull, isTransientNetworkError, MeshError, PluginStageError, reasonOf } from './errors.js';
import { abortableSleep } from './kit/sleep.js';
import { CALL_RETRY_BACKOFF, retryDelayMs } from './runtime/retry-backoff.js';
import { installedRecordOf } from './installed-record.js';
import type { ArtifactStage } from './hooks.js';
import type { ArtifactContext, InstalledArtifactRecord, RollbackContext, VerifiedTarget } from './plugin.js';
import { canonicalize } from '@tufjs/canonical-json';
import { runProbe } from './probe-runner.js';
import type { InflightPhase } from './state/agent-state.js';
import type { ArtifactState } from './contract/messages.js';

/** Calls one stage hook, wrapping a plugin's error with the hook's name (its cause kept). */
export async function callStage(agent: Agent, stage: ArtifactStage, ctx: ArtifactContext | RollbackContext): Promise<void> {
  const kind = ctx.assignment.kind;
  const hook = agent.hooks[stage].get(kind);
  if (!hook) return;
  try {
    await hook.promise(ctx as RollbackContext);
  } catch (err) {
    // reasonOf keeps a plugin's own error code visible behind ours.
    throw new PluginStageError(stage, `${stage} hook for kind "${kind}" failed: ${reasonOf(err)}`, { cause: err });
  }
}

/**
 * The shortest time between two download progress reports of one assignment (the first one
 * and the final one always go out). Every report is two durable state writes (queued, then
 * dropped once acknowledged) and a ReportArtifactStatus call; at one a second they were a
 * measurable part of the agent's CPU during a long download (docs/benchmarks.md, pipeline),
 * and of the server's load with many devices downloading at once. Progress in the rollout
 * view moving every 5 s is as useful to an operator as every second.
 */
export const PROGRESS_REPORT_INTERVAL_MS = 5000;

export function stagingDirOf(agent: Agent, assignmentId: string): string {
  return path.join(agent.dataDir, 'staging', assignmentId.replace(/[^A-Za-z0-9_-]/g, '_'));
}

export function createContext(
  agent: Agent,
  assignment: Assignment,
  spec: unknown,
  previous: InstalledArtifactRecord | undefined,
  pluginState: Record<string, unknown>,
  signal: AbortSignal,
): ArtifactContext {
  const log = agent.log.child({ assignmentId: assignment.assignmentId, artifact: assignment.name, version: assignment.version });
  let lastProgress: number | undefined;
  const ctx: ArtifactContext = {
    assignment,
    spec,
    dataDir: agent.dataDir,
    stagingDir: stagingDirOf(agent, assignment.assignmentId),
    stagedFile: undefined,
    target: undefined,
    previous,
    pluginState,
    liveChanged: false,
    checkpoint: async (state) => {
      ctx.pluginState = { ...ctx.pluginState, ...state };
      await agent.state.update((draft) => {
        const inflight = draft.inflight[assignment.name];
        if (inflight) inflight.pluginState = ctx.pluginState;
      });
    },
    reportProgress: (done, total) => {
      // Each report is a durable state write, a gRPC call and a state write more when it is
      // acknowledged: the first one, then at most one per PROGRESS_REPORT_INTERVAL_MS, and
      // always the one that says the download is complete.
      const now = Date.now();
      if (done < total && lastProgress !== undefined && now - lastProgress < PROGRESS_REPORT_INTERVAL_MS) return;
      lastProgress = now;
      agent.transition(assignment, 'DOWNLOADING', '', { bytesDone: done, bytesTotal: total }).catch((err: unknown) => log.error({ err }, 'could not record download progress'));
    },
    signal,
    log,
  };
  return ctx;
}

function setPhase(agent: Agent, name: string, phase: InflightPhase, extra: { pluginState?: Record<string, unknown> } = {}) {
  return agent.state.update((draft) => {
    const inflight = draft.inflight[name];
    if (!inflight) return;
    inflight.phase = phase;
    if (extra.pluginState) inflight.pluginState = extra.pluginState;
  });
}

/** Runs the rollback and cleanup hooks; returns an error text if rollback itself failed. */
export async function rollBack(agent: Agent, ctx: ArtifactContext, why: string): Promise<string | undefined> {
  const rollbackCtx: RollbackContext = Object.assign(Object.create(null) as object, ctx, { why });
  try {
    await callStage(agent, 'rollback', rollbackCtx);
    return undefined;
  } catch (err) {
    ctx.log.error({ err }, 'rollback failed');
    return reasonOf(err);
  }
}

export async function cleanUp(agent: Agent, ctx: ArtifactContext): Promise<void> {
  try {
    await callStage(agent, 'cleanup', ctx);
  } catch (err) {
    ctx.log.warn({ err }, 'cleanup failed');
  }
  await fs.rm(ctx.stagingDir, { recursive: true, force: true });
}

/**
 * The publisher signed the artifact's kind and spec into its TUF target (`custom`), so a
 * control plane that was tampered with cannot send signed bytes somewhere else (a config to
 * another destination, say): the assignment must say exactly what was signed.
 */
function assertMatchesSignedIntent(assignment: Assignment, spec: unknown, target: VerifiedTarget): void {
  const signed = target.signed;
  if (!signed) return;
  if (signed.kind !== undefined && signed.kind !== assignment.kind) {
    throw new MeshError('MESH_ERR_SPEC_INVALID', `assignment kind "${assignment.kind}" differs from the signed kind "${signed.kind}"`);
  }
  if (signed.spec !== undefined && canonicalize(signed.spec as Parameters<typeof canonicalize>[0]) !== canonicalize(spec as Parameters<typeof canonicalize>[0])) {
    throw new MeshError('MESH_ERR_SPEC_INVALID', 'assignment spec differs from the spec signed into the TUF target');
  }
}

/** The reported reason; a full disk is named as such (MESH_ERR_DISK_FULL), whatever layer saw it first. */
function failureReason(err: unknown, stage: 'downloading' | 'applying', done?: string): string {
  if (!isDiskFull(err)) return reasonOf(err);
  return `MESH_ERR_DISK_FULL: no space left on the device while ${stage} (${reasonOf(err)})${done ? `; ${done}` : ''}`;
}

/** Attempts of a TUF refresh or a download within one run of the pipeline (see below). */
export const NETWORK_ATTEMPTS = 3;

/**
 * Runs `step` again, with jittered backoff, while it fails on the network (errors.ts says
 * which failures those are); a download resumes where the last attempt stopped (Range).
 */
async function withNetworkRetry<T>(ctx: ArtifactContext, what: string, step: () => Promise<T>): Promise<T> {
  for (let failures = 1; ; failures++) {
    try {
      return await step();
    } catch (err) {
      if (ctx.signal.aborted || failures >= NETWORK_ATTEMPTS || !isTransientNetworkError(err)) throw err;
      const retryInMs = retryDelayMs(failures, CALL_RETRY_BACKOFF);
      ctx.log.warn({ err: reasonOf(err), failures, retryInMs }, `${what} failed on the way; retrying`);
      await abortableSleep(retryInMs, ctx.signal);
    }
  }
}

export async function runPipeline(agent: Agent, assignment: Assignment, signal: AbortSignal): Promise<ArtifactState> {
  const { name } = assignment;
  let validated;
  try {
    // Before the DOWNLOADING transition: a refused instruction fetches and touches nothing.
    validated = await agent.revalidate(assignment);
  } catch (err) {
    await agent.transition(assignment, 'FAILED', reasonOf(err));
    return 'FAILED';
  }

  const previous = agent.state.current.installed[name];
  const resumed = agent.state.current.inflight[name];
  // A resumed download keeps what the plugin checkpointed before the restart (an image it
  // already pulled, say), so cleanup still knows what is its own.
  const carried = resumed?.assignment.assignmentId === assignment.assignmentId ? resumed.pluginState : {};
  const ctx = createContext(agent, assignment, validated.spec, previous, carried, signal);

  // Before the swap: any failure ends FAILED with nothing changed on the device.
  try {
    const resumedWhy = resumed?.heldByNetwork ? 'resuming after the network failed' : 'resuming after agent restart';
    await agent.transition(assignment, 'DOWNLOADING', resumed ? resumedWhy : '', {}, (draft) => {
      draft.inflight[name] = {
        assignment,
        phase: 'downloading',
        pluginState: carried,
        startedAt: new Date().toISOString(),
      };
    });
    const target = await withNetworkRetry(ctx, 'TUF refresh', () => agent.targetSource.resolve(assignment.targetPath, signal));
    // Defense in depth: the control plane's expectation must match what TUF verified.
    if (target.sha256 !== assignment.expectedSha256 || target.length !== assignment.expectedLength) {
      throw new MeshError(
        'MESH_ERR_DIGEST_MISMATCH',
        `assignment expects sha256 ${assignment.expectedSha256} (${assignment.expectedLength} bytes) but the TUF-verified target has sha256 ${target.sha256} (${target.length} bytes)`,
      );
    }
    assertMatchesSignedIntent(assignment, validated.spec, target);
    // Only a source that allows it gets here without one (TufTargetSource: tuf.allowUnsignedIntent).
    if (!target.signed) ctx.log.warn({ targetPath: target.targetPath }, 'target carries no signed kind and spec: acting on the assignment alone');
    ctx.target = target;
    await fs.mkdir(ctx.stagingDir, { recursive: true, mode: 0o700 });
    const staged = path.join(ctx.stagingDir, 'target');
    await withNetworkRetry(ctx, 'download', () => agent.targetSource.fetch(target, staged, { onProgress: (done, total) => ctx.reportProgress(done, total), signal }));
    ctx.stagedFile = staged;
    // A plugin's own fetch (a container image's pull) gets the same attempts: its hook must
    // be safe to run again, as it already is after a restart.
    await withNetworkRetry(ctx, 'download stage', () => callStage(agent, 'download', ctx));

    await agent.transition(assignment, 'VERIFYING', '', { bytesDone: target.length, bytesTotal: target.length }, (draft) => {
      const inflight = draft.inflight[name];
      if (inflight) {
        inflight.phase = 'verifying';
        inflight.target = target;
      }
    });
    await callStage(agent, 'verify', ctx);
  } catch (err) {
    if (signal.aborted) {
      // The agent is stopping: nothing changed yet, so keep the journal and resume next start.
      ctx.log.info('download interrupted by shutdown; will resume');
      return 'DOWNLOADING';
    }
    if (isTransientNetworkError(err)) {
      // The network, not the artifact: nothing changed, so the journal and the partial
      // download stay and the assignment stays open; the next heartbeat's reconcile runs it
      // again and the download resumes. A device never gives up on an update over an outage.
      ctx.log.warn({ err: reasonOf(err), attempts: NETWORK_ATTEMPTS }, 'update held back by the network; resuming at the next heartbeat');
      await agent.transition(assignment, 'DOWNLOADING', `${reasonOf(err)}; ${NETWORK_ATTEMPTS} attempts failed on the network, resuming at the next heartbeat`, {}, (draft) => {
        const inflight = draft.inflight[name];
        if (inflight) inflight.heldByNetwork = true;
      });
      return 'DOWNLOADING';
    }
    // Staging goes first: on a full disk the partial download is what fills it, and the
    // FAILED report below must be written to that same disk (issue 29). Nothing live changed,
    // so a crash in between only means the download starts over at the next start.
    await cleanUp(agent, ctx);
    await agent.transition(assignment, 'FAILED', failureReason(err, 'downloading', 'the partial download was removed'));
    return 'FAILED';
  }

  await agent.transition(assignment, 'APPLYING', '', {}, (draft) => {
    const inflight = draft.inflight[name];
    if (inflight) inflight.phase = 'applying';
  });
  try {
    await callStage(agent, 'apply', ctx);
  } catch (err) {
    const failure = await rollBack(agent, ctx, `apply failed: ${reasonOf(err)}`);
    // Nothing live changed: FAILED. The swap happened and was undone: ROLLED_BACK.
    const state: ArtifactState = ctx.liveChanged && !failure ? 'ROLLED_BACK' : 'FAILED';
    const reason = failure
      ? `${failureReason(err, 'applying')}; rollback also failed: ${failure}`
      : ctx.liveChanged
        ? `${failureReason(err, 'applying')}; previous version restored`
        : `${failureReason(err, 'applying')}; nothing changed`;
    await agent.transition(assignment, state, reason);
    await cleanUp(agent, ctx);
    return state;
  }

  await setPhase(agent, name, 'probing', { pluginState: ctx.pluginState });
  let outcome;
  try {
    outcome = await runProbe(agent.hooks, assignment, validated.probeSpec, ctx.log, signal);
  } catch (err) {
    outcome = { healthy: false, attempts: [`probe interrupted: ${reasonOf(err)}`] };
  }

  if (outcome.healthy) {
    const record = installedRecordOf(assignment, ctx.pluginState, previous);
    await agent.transition(assignment, 'HEALTHY', outcome.attempts.join('; '), {}, (draft) => {
      draft.installed[name] = record;
    });
    await cleanUp(agent, ctx);
    return 'HEALTHY';
  }

  await setPhase(agent, name, 'rolling_back');
  const failure = await rollBack(agent, ctx, 'probe failed on every attempt');
  const probeText = `probe failed on every attempt: ${outcome.attempts.join('; ')}`;
  const state: ArtifactState = failure ? 'FAILED' : 'ROLLED_BACK';
  await agent.transition(
    assignment,
    state,
    failure ? `MESH_ERR_PROBE_FAILED: ${probeText}; rollback failed: ${failure}` : `MESH_ERR_PROBE_FAILED: ${probeText}; previous version restored`,
  );
  await cleanUp(agent, ctx);
  return state;
}
