// The swap and its undo:
//   apply     create <name>.meshanics-staging, stop the current container, rename it to
//             <name>.meshanics-previous, rename staging to <name>, start it
//   rollback  remove what this assignment created, rename the previous container back, start it
// Every step a rollback needs to know about is checkpointed first, and rollback works from the
// checkpointed plugin state and the runtime's labels alone (after an agent restart or a reboot).
import { reasonOf, type ArtifactContext, type RollbackContext } from '@meshanics/core';
import {
  engineError,
  inspectContainer,
  inspectImage,
  listContainersByLabels,
  nameOf,
  removeContainer,
  renameContainer,
  startContainer,
  statusOf,
  stopContainer,
  waitForEngine,
  type ContainerCreateOptions,
  type ContainerInspectInfo,
  type Engine,
  type Engines,
} from './engine.js';
import { repullVanishedImage } from './image-pull.js';
import { BACKUP_SUFFIX, LABELS, STAGING_SUFFIX, isOurs } from './labels.js';
import { stateOf, type PreviousContainer } from './plugin-state.js';
import { DEFAULT_HOST_IP, DEFAULT_STOP_TIMEOUT_SECONDS, parseImageReference, type ContainerSpec } from './schema.js';

function createOptions(spec: ContainerSpec, name: string, labels: Record<string, string>): ContainerCreateOptions {
  const exposed: Record<string, object> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const port of spec.ports ?? []) {
    const key = `${port.container}/${port.protocol ?? 'tcp'}`;
    exposed[key] = {};
    (bindings[key] ??= []).push({ HostIp: port.hostIp ?? DEFAULT_HOST_IP, HostPort: String(port.host) });
  }
  return {
    name,
    Image: spec.image,
    ...(spec.cmd ? { Cmd: spec.cmd } : {}),
    Env: Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
    Labels: labels,
    ExposedPorts: exposed,
    StopTimeout: spec.stopTimeoutSeconds ?? DEFAULT_STOP_TIMEOUT_SECONDS,
    HostConfig: {
      PortBindings: bindings,
      RestartPolicy: { Name: spec.restartPolicy ?? 'no' },
      Mounts: (spec.mounts ?? []).map((m) => ({ Type: 'bind' as const, Source: m.source, Target: m.target, ReadOnly: m.readOnly ?? false })),
      Privileged: false,
    },
  };
}

/** Creates the staging container; an image that vanished since the download is pulled again once. */
async function createStaging(engines: Engines, ctx: ArtifactContext, options: ContainerCreateOptions, pullTimeoutMs: number) {
  const image = (ctx.spec as ContainerSpec).image;
  for (;;) {
    try {
      return await engines.api.createContainer(options);
    } catch (err) {
      // A 404 from create with the image gone from the store is "no such image"; any other
      // failure (or a 404 with the image present) is the runtime's error as it stands.
      if (statusOf(err) !== 404 || (await inspectImage(engines.api, image))) throw engineError(`create container ${options.name} from ${image}`, err);
      // Throws when the one re-pull of this assignment was already spent.
      await repullVanishedImage(engines, ctx, pullTimeoutMs, 'between the download stage and the container create');
    }
  }
}

export async function applyContainer(engines: Engines, ctx: ArtifactContext, pullTimeoutMs: number): Promise<void> {
  const spec = ctx.spec as ContainerSpec;
  const { assignment } = ctx;
  const { api } = engines;
  const artifact = assignment.name;
  const stagingName = `${spec.name}${STAGING_SUFFIX}`;

  const current = await prepare(api, artifact, spec.name, ctx.log);
  const previous: PreviousContainer | null = current
    ? {
        id: current.Id,
        name: nameOf(current),
        backupName: `${nameOf(current)}${BACKUP_SUFFIX}`,
        digest: current.Config.Labels?.[LABELS.digest],
        running: current.State.Running,
        restartPolicy: current.HostConfig.RestartPolicy
          ? { Name: current.HostConfig.RestartPolicy.Name ?? 'no', MaximumRetryCount: current.HostConfig.RestartPolicy.MaximumRetryCount }
          : undefined,
      }
    : null;
  // Before anything changes: what a rollback needs, even after a crash.
  await ctx.checkpoint({ name: spec.name, stagingName, previous });

  const labels = {
    [LABELS.managed]: 'true',
    [LABELS.artifact]: artifact,
    [LABELS.version]: assignment.version,
    [LABELS.digest]: parseImageReference(spec.image).digest,
    [LABELS.image]: spec.image,
    [LABELS.assignment]: assignment.assignmentId,
  };
  const created = await createStaging(engines, ctx, createOptions(spec, stagingName, labels), pullTimeoutMs);
  await ctx.checkpoint({ newId: created.id });

  if (previous) {
    // From here on the live state changes: a failure ends ROLLED_BACK after the rollback.
    ctx.liveChanged = true;
    await stopContainer(api, previous.id);
    // A stopped container with restart=always comes back when docker restarts: the backup
    // must not. Podman's API has no update call (and no daemon restarting containers).
    if (previous.restartPolicy && previous.restartPolicy.Name !== 'no' && previous.restartPolicy.Name !== '') {
      await api
        .getContainer(previous.id)
        .update({ RestartPolicy: { Name: 'no' } })
        .catch((err: unknown) => ctx.log.debug({ err: reasonOf(err) }, 'restart policy of the backup not changed'));
    }
    await renameContainer(api, previous.id, previous.backupName);
  }
  await renameContainer(api, created.id, spec.name);
  ctx.liveChanged = true;
  await startContainer(api, created.id);
  ctx.log.info({ container: spec.name, image: spec.image, previous: previous?.id }, 'container started');
}

export async function rollbackContainer(engines: Engines, ctx: RollbackContext, runtimeWaitMs: number): Promise<void> {
  const state = stateOf(ctx);
  const { assignment } = ctx;
  const { api, socketPath } = engines;
  await waitForEngine(api, runtimeWaitMs, socketPath);
  // 1. Whatever this assignment created goes, under any name (labels say whose it is).
  const created = await listContainersByLabels(api, {
    [LABELS.managed]: 'true',
    [LABELS.assignment]: assignment.assignmentId,
  });
  for (const c of created) {
    if (!isOurs(c.Labels, assignment.name)) continue;
    await removeContainer(api, c.Id);
  }
  if (state.newId && !created.some((c) => c.Id === state.newId)) await removeContainer(api, state.newId);
  // 2. The previous container gets its name back and runs again.
  const previous = state.previous;
  if (!previous) {
    ctx.log.info({ why: ctx.why }, 'new container removed; there was no previous one');
    return;
  }
  const info = await inspectContainer(api, previous.id);
  if (!info) throw new Error(`the previous container ${previous.name} (${previous.id}) no longer exists; cannot restore it`);
  if (!isOurs(info.Config.Labels, assignment.name)) {
    throw new Error(`container ${previous.id} does not carry the labels of artifact ${assignment.name}; not touching it`);
  }
  if (nameOf(info) !== previous.name) await renameContainer(api, previous.id, previous.name);
  const policy = previous.restartPolicy;
  if (policy && policy.Name && policy.Name !== 'no' && info.HostConfig.RestartPolicy?.Name !== policy.Name) {
    await api
      .getContainer(previous.id)
      .update({ RestartPolicy: policy })
      .catch((err: unknown) => ctx.log.warn({ err: reasonOf(err) }, 'could not restore the restart policy'));
  }
  if (previous.running) await startContainer(api, previous.id);
  ctx.log.info({ container: previous.name, why: ctx.why }, 'previous container restored');
}

/**
 * Before an apply: refuses a managed name held by a container that is not this artifact's,
 * removes leftovers of interrupted attempts, and returns the artifact's live container.
 */
async function prepare(api: Engine, artifact: string, name: string, log: ArtifactContext['log']): Promise<ContainerInspectInfo | undefined> {
  const holder = await inspectContainer(api, name);
  if (holder && !isOurs(holder.Config.Labels, artifact)) {
    throw new Error(
      `a container named "${name}" exists and is not managed by Meshanics for artifact "${artifact}" (no ${LABELS.managed}/${LABELS.artifact} labels); not touching it`,
    );
  }
  const ours = (await listContainersByLabels(api, { [LABELS.managed]: 'true', [LABELS.artifact]: artifact })).filter((c) => isOurs(c.Labels, artifact));
  const live = ours.filter((c) => !nameOf(c).includes('.'));
  for (const c of ours) {
    if (nameOf(c).endsWith(STAGING_SUFFIX)) {
      log.warn({ container: nameOf(c) }, 'removing a staging container left by an interrupted update');
      await removeContainer(api, c.Id);
    }
  }
  const backups = ours.filter((c) => nameOf(c).endsWith(BACKUP_SUFFIX));
  if (live.length === 0 && backups.length === 1) {
    // An earlier rollback did not finish: the backup is the known-good container.
    const backup = backups[0]!;
    const original = nameOf(backup).slice(0, -BACKUP_SUFFIX.length);
    log.warn({ container: original }, 'restoring the name of a backup container left by an interrupted update');
    await renameContainer(api, backup.Id, original);
    const info = await inspectContainer(api, backup.Id);
    return info && { ...info, State: { ...info.State, Running: true } };
  }
  if (live.length > 1) {
    throw new Error(`several live containers are managed for artifact "${artifact}": ${live.map(nameOf).join(', ')}`);
  }
  const first = live[0];
  if (!first) return undefined;
  // A backup next to a live container is superseded (a cleanup that never ran).
  for (const c of backups) {
    log.info({ container: nameOf(c) }, 'removing a superseded backup container');
    await removeContainer(api, c.Id);
  }
  return await inspectContainer(api, first.Id);
}
