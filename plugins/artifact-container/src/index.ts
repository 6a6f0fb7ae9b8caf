// @meshanics/artifact-container: a container delivered as a TUF-signed JSON descriptor that
// pins its image by digest, run through the device's own Docker-API runtime (podman's
// Docker-compatible service or docker) with dockerode.
//
//   download  descriptor == assignment spec; bind mounts allowlisted; pull by digest (progress)
//   verify    the local image's RepoDigests hold the pinned digest
//   apply     create <name>.meshanics-staging, stop the current container, rename it to
//             <name>.meshanics-previous, rename staging to <name>, start it
//   rollback  remove what this assignment created, rename the previous container back, start it
//   cleanup   after HEALTHY the backup container goes; images: current and previous stay
//
// Every step a rollback needs to know about is checkpointed first, and rollback works from
// the checkpointed plugin state and the runtime's labels alone (after an agent restart or a
// reboot). Containers and images the agent did not create are never touched.
import { promises as fs } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import {
  MeshError,
  assertBindMountPath,
  compileSchema,
  reasonOf,
  type Agent,
  type Allowlist,
  type ArtifactContext,
  type InstalledArtifactRecord,
  type MeshanicsPlugin,
} from '@meshanics/core';
import {
  ARTIFACT_KIND,
  CONTAINER_SPEC_SCHEMA,
  DEFAULT_HOST_IP,
  DEFAULT_STOP_TIMEOUT_SECONDS,
  parseImageReference,
  type ContainerSpec,
} from './schema.js';
import {
  connectEngine,
  engineError,
  inspectContainer,
  inspectImage,
  isNotFound,
  listContainersByLabels,
  nameOf,
  pullImage,
  removeContainer,
  renameContainer,
  startContainer,
  statusOf,
  stopContainer,
  waitForEngine,
  type ContainerCreateOptions,
  type ContainerInspectInfo,
  type Engine,
} from './engine.js';
import { resolveRuntimeSocket, runtimeSocketCandidates, type ContainerRuntimeOption } from './runtime.js';

export * from './schema.js';
export {
  DOCKER_SOCKET,
  PODMAN_ROOTFUL_SOCKET,
  resolveRuntimeSocket,
  runtimeSocketCandidates,
  type ContainerRuntimeOption,
  type ResolveRuntimeOptions,
} from './runtime.js';

const PLUGIN_NAME = 'ContainerArtifactPlugin';

/** Labels on every container the agent creates; nothing without them is ever touched. */
export const LABELS = Object.freeze({
  managed: 'dev.meshanics.managed',
  artifact: 'dev.meshanics.artifact',
  version: 'dev.meshanics.version',
  digest: 'dev.meshanics.digest',
  image: 'dev.meshanics.image',
  assignment: 'dev.meshanics.assignment',
});

/** Container names: the managed name is a DNS label (no dot), so these never collide with one. */
export const STAGING_SUFFIX = '.meshanics-staging';
export const BACKUP_SUFFIX = '.meshanics-previous';

export interface ContainerPluginOptions {
  /** auto (default) | podman | docker | absolute path of a Docker-API unix socket. */
  runtime?: ContainerRuntimeOption;
  /** Upper bound of one image pull (default 15 min). */
  pullTimeoutMs?: number;
  /** Idle guard on every other runtime call (default 3 min). */
  apiTimeoutMs?: number;
  /** How long a rollback waits for the runtime to answer (after a reboot); default 60 s. */
  runtimeWaitMs?: number;
}

/** What the plugin checkpoints (JSON: it is persisted in the agent's state). */
export interface ContainerPluginState {
  image?: { ref: string; digest: string; id?: string; managed: boolean };
  /** The managed container name and the staging name of this assignment. */
  name?: string;
  stagingName?: string;
  /** The container that was live before this assignment; null when there was none. */
  previous?: PreviousContainer | null;
  newId?: string;
}

export interface PreviousContainer {
  id: string;
  name: string;
  backupName: string;
  digest: string | undefined;
  running: boolean;
  restartPolicy: { Name: string; MaximumRetryCount?: number } | undefined;
}

const descriptorValidator = compileSchema<ContainerSpec>(CONTAINER_SPEC_SCHEMA, 'descriptor');

function isOurs(labels: Record<string, string> | undefined | null, artifact: string): boolean {
  return labels?.[LABELS.managed] === 'true' && labels?.[LABELS.artifact] === artifact;
}

function stateOf(ctx: { pluginState: Record<string, unknown> }): ContainerPluginState {
  return ctx.pluginState;
}

/** The descriptor bytes are the TUF target; the assignment must carry exactly the same spec. */
async function assertDescriptorMatches(ctx: ArtifactContext): Promise<void> {
  if (!ctx.stagedFile) throw new MeshError('MESH_ERR_SPEC_INVALID', 'no verified container descriptor to read');
  const text = await fs.readFile(ctx.stagedFile, 'utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new MeshError('MESH_ERR_SPEC_INVALID', `the TUF target is not a JSON container descriptor: ${(err as Error).message}`);
  }
  const result = descriptorValidator(parsed);
  if (!result.ok) throw new MeshError('MESH_ERR_SPEC_INVALID', `the TUF target is not a valid container descriptor: ${result.errors.join('; ')}`);
  if (!isDeepStrictEqual(result.value, ctx.spec)) {
    throw new MeshError('MESH_ERR_SPEC_INVALID', 'the assignment spec differs from the container descriptor signed as the TUF target');
  }
}

/** Bind mount sources: under `allowlist.bindMountPaths`, also once symlinks are resolved. */
async function assertMountsAllowed(allowlist: Allowlist, spec: ContainerSpec): Promise<void> {
  const mounts = spec.mounts ?? [];
  if (mounts.length === 0) return;
  for (const mount of mounts) assertBindMountPath(allowlist, mount.source);
  const realPrefixes = await Promise.all(
    allowlist.bindMountPaths.map(async (p) => fs.realpath(p).catch(() => p)),
  );
  for (const mount of mounts) {
    let real: string;
    try {
      real = await fs.realpath(mount.source);
    } catch (err) {
      throw new MeshError('MESH_ERR_SPEC_INVALID', `bind mount source "${mount.source}" does not exist on the device (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (real !== mount.source) {
      try {
        assertBindMountPath({ ...allowlist, bindMountPaths: realPrefixes }, real);
      } catch {
        throw new MeshError(
          'MESH_ERR_ALLOWLIST_DENIED',
          `bind mount "${mount.source}" escapes the allowlisted paths through a symlink (it resolves to ${real}) (allowlist.bindMountPaths)`,
        );
      }
    }
  }
}

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

function imageOfRecord(record: Omit<InstalledArtifactRecord, 'previous'> | undefined): ContainerPluginState['image'] {
  const image = (record?.pluginState as ContainerPluginState | undefined)?.image;
  return image && typeof image.ref === 'string' && typeof image.digest === 'string' ? image : undefined;
}

export default class ContainerArtifactPlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  readonly name = PLUGIN_NAME;
  readonly version = '0.1.0';
  readonly coreApi = '^0.1.0';
  readonly provides = { artifactKind: ARTIFACT_KIND };
  readonly specSchema = CONTAINER_SPEC_SCHEMA;
  readonly runtime: ContainerRuntimeOption;
  readonly #pullTimeoutMs: number;
  readonly #apiTimeoutMs: number;
  readonly #runtimeWaitMs: number;
  readonly #engines = new Map<string, { api: Engine; pull: Engine }>();
  /**
   * Image digests claimed by updates in progress (assignment id -> digest), from the start of
   * their download to the end of their cleanup. The agent runs several pipelines at once and
   * the runtime has one image store: without this, one artifact's cleanup could remove an
   * image another artifact has just pulled and not yet created a container from.
   */
  readonly #claims = new Map<string, string>();

  constructor(options: ContainerPluginOptions = {}) {
    this.runtime = options.runtime ?? 'auto';
    runtimeSocketCandidates(this.runtime); // refuses a malformed option at load time
    this.#pullTimeoutMs = options.pullTimeoutMs ?? 15 * 60_000;
    this.#apiTimeoutMs = options.apiTimeoutMs ?? 3 * 60_000;
    this.#runtimeWaitMs = options.runtimeWaitMs ?? 60_000;
  }

  /** The runtime's socket, resolved at each use: a runtime started after the agent is found. */
  socketPath(): string {
    const socket = resolveRuntimeSocket(this.runtime);
    if (!socket) {
      throw new Error(
        `no container runtime socket found for runtime "${this.runtime}" (looked for ${runtimeSocketCandidates(this.runtime).join(', ')})`,
      );
    }
    return socket;
  }

  async #engine(): Promise<{ api: Engine; pull: Engine; socketPath: string }> {
    const socketPath = this.socketPath();
    let engines = this.#engines.get(socketPath);
    if (!engines) {
      engines = { api: await connectEngine(socketPath, this.#apiTimeoutMs), pull: await connectEngine(socketPath, 0) };
      this.#engines.set(socketPath, engines);
    }
    return { ...engines, socketPath };
  }

  apply(agent: Agent): void {
    agent.hooks.download.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const spec = ctx.spec as ContainerSpec;
      await assertDescriptorMatches(ctx);
      await assertMountsAllowed(agent.allowlist, spec);
      const { api, pull, socketPath } = await this.#engine();
      await waitForEngine(api, 0, socketPath);
      const { digest } = parseImageReference(spec.image);
      this.#claims.set(ctx.assignment.assignmentId, digest);
      const present = await inspectImage(api, spec.image);
      // Ours to remove later only if we pulled it (or a version we installed did).
      const knownOurs = [ctx.previous, ctx.previous?.previous].some((r) => {
        const image = imageOfRecord(r);
        return image?.digest === digest && image.managed;
      });
      if (!present) {
        ctx.log.info({ image: spec.image }, 'pulling image');
        let last = 0;
        await pullImage(pull, spec.image, {
          timeoutMs: this.#pullTimeoutMs,
          signal: ctx.signal,
          onProgress: (done, total) => {
            // Every report is a durable state write: at most a few per second.
            const now = Date.now();
            if (now - last < 250 && done < total) return;
            last = now;
            ctx.reportProgress(done, total);
          },
        });
      }
      await ctx.checkpoint({ image: { ref: spec.image, digest, managed: !present || knownOurs } });
    });

    agent.hooks.verify.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const spec = ctx.spec as ContainerSpec;
      const { api } = await this.#engine();
      const { repository, digest } = parseImageReference(spec.image);
      const info = await inspectImage(api, spec.image);
      if (!info) throw new MeshError('MESH_ERR_DIGEST_MISMATCH', `image ${spec.image} is not in the runtime's local store after the pull`);
      const normalize = (repo: string) => repo.replace(/^docker\.io\//, '').replace(/^library\//, '');
      const held = (info.RepoDigests ?? []).some((rd) => {
        const at = rd.lastIndexOf('@');
        return at > 0 && rd.slice(at + 1) === digest && normalize(rd.slice(0, at)) === normalize(repository);
      });
      if (!held) {
        throw new MeshError(
          'MESH_ERR_DIGEST_MISMATCH',
          `local image ${info.Id} does not hold the pinned digest ${digest} (RepoDigests: ${JSON.stringify(info.RepoDigests ?? [])})`,
        );
      }
      const image = stateOf(ctx).image ?? { ref: spec.image, digest, managed: false };
      await ctx.checkpoint({ image: { ...image, id: info.Id } });
    });

    agent.hooks.apply.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const spec = ctx.spec as ContainerSpec;
      const { assignment } = ctx;
      const artifact = assignment.name;
      // Again at apply: the file system may have changed since download (a new symlink).
      await assertMountsAllowed(agent.allowlist, spec);
      const { api } = await this.#engine();
      const stagingName = `${spec.name}${STAGING_SUFFIX}`;

      const current = await this.#prepare(api, artifact, spec.name, ctx.log);
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
      let created;
      try {
        created = await api.createContainer(createOptions(spec, stagingName, labels));
      } catch (err) {
        throw engineError(`create container ${stagingName} from ${spec.image}`, err);
      }
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
    });

    agent.hooks.rollback.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const state = stateOf(ctx);
      const { assignment } = ctx;
      const { api, socketPath } = await this.#engine();
      await waitForEngine(api, this.#runtimeWaitMs, socketPath);
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
    });

    agent.hooks.cleanup.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      try {
        await this.#cleanup(agent, ctx);
      } finally {
        this.#claims.delete(ctx.assignment.assignmentId);
      }
    });
  }

  async #cleanup(agent: Agent, ctx: ArtifactContext): Promise<void> {
    const state = stateOf(ctx);
    const { assignment } = ctx;
    if (!state.image && !state.previous) return; // nothing of ours was created
    const { api } = await this.#engine();
    const installed = agent.state.current.installed[assignment.name];
    // Images another installed container artifact runs or may roll back to stay too.
    const othersKeep = Object.values(agent.state.current.installed)
      .filter((record) => record.name !== assignment.name)
      .flatMap((record) => [imageOfRecord(record)?.digest, imageOfRecord(record.previous)?.digest]);
    const claimedByOthers = [...this.#claims].filter(([id]) => id !== assignment.assignmentId).map(([, digest]) => digest);
    const healthy = installed?.assignmentId === assignment.assignmentId;
    if (healthy) {
      // The new container is live and healthy: the backup container can go.
      const previous = state.previous;
      if (previous && previous.id !== state.newId) {
        const info = await inspectContainer(api, previous.id);
        if (info && isOurs(info.Config.Labels, assignment.name) && nameOf(info) === previous.backupName) {
          await removeContainer(api, previous.id);
          ctx.log.info({ container: previous.backupName }, 'backup container removed');
        }
      }
      // Images: the current one and the previous one stay; the one before goes.
      const keep = new Set([state.image?.digest, imageOfRecord(ctx.previous)?.digest, ...othersKeep, ...claimedByOthers]);
      await this.#removeImage(api, imageOfRecord(ctx.previous?.previous), keep, ctx.log);
    } else {
      // Not live: its image goes unless the current or previous version uses it.
      const keep = new Set([imageOfRecord(installed)?.digest, imageOfRecord(installed?.previous)?.digest, ...othersKeep, ...claimedByOthers]);
      await this.#removeImage(api, state.image, keep, ctx.log);
    }
  }

  /**
   * Before an apply: refuses a managed name held by a container that is not this artifact's,
   * removes leftovers of interrupted attempts, and returns the artifact's live container.
   */
  async #prepare(api: Engine, artifact: string, name: string, log: ArtifactContext['log']): Promise<ContainerInspectInfo | undefined> {
    const holder = await inspectContainer(api, name);
    if (holder && !isOurs(holder.Config.Labels, artifact)) {
      throw new Error(
        `a container named "${name}" exists and is not managed by Meshanics for artifact "${artifact}" (no ${LABELS.managed}/${LABELS.artifact} labels); not touching it`,
      );
    }
    const ours = (await listContainersByLabels(api, { [LABELS.managed]: 'true', [LABELS.artifact]: artifact })).filter((c) =>
      isOurs(c.Labels, artifact),
    );
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

  /** Removes an image the agent pulled, never one it did not, nor one still in use or kept. */
  async #removeImage(
    api: Engine,
    image: ContainerPluginState['image'],
    keep: Set<string | undefined>,
    log: ArtifactContext['log'],
  ): Promise<void> {
    if (!image || !image.managed || keep.has(image.digest)) return;
    const info = await inspectImage(api, image.ref);
    if (!info) return;
    if (image.id && info.Id !== image.id) return;
    const { repository } = parseImageReference(image.ref);
    // Podman lists digest references among RepoTags; a real tag means someone else named it.
    const foreignTags = (info.RepoTags ?? []).filter((t) => !t.includes('@'));
    const foreignDigests = (info.RepoDigests ?? []).filter((d) => !d.startsWith(`${repository}@`));
    if (foreignTags.length > 0 || foreignDigests.length > 0) {
      log.info({ image: image.ref, foreignTags, foreignDigests }, 'image also named by others; kept');
      return;
    }
    try {
      await api.getImage(image.ref).remove();
      log.info({ image: image.ref }, 'image removed');
    } catch (err) {
      if (isNotFound(err)) return;
      // 409: a container (ours or not) still uses it: it stays.
      if (statusOf(err) === 409) log.info({ image: image.ref }, 'image in use; kept');
      else throw engineError(`remove image ${image.ref}`, err);
    }
  }
}
