// After a terminal state: after HEALTHY the backup container goes; images: the current and
// the previous version's stay, the one before goes. After a failure the attempted image goes
// unless a version still uses it. Only images the agent pulled itself are ever removed, never
// one another installed artifact runs or may roll back to, nor one an update in progress claimed.
import type { Agent, ArtifactContext } from '@meshanics/core';
import { engineError, inspectContainer, inspectImage, isNotFound, nameOf, removeContainer, statusOf, type Engine } from './engine.js';
import { isOurs } from './labels.js';
import { imageOfRecord, stateOf, type ContainerPluginState } from './plugin-state.js';
import { parseImageReference } from './schema.js';

/** `claimedByOthers`: digests of the updates in progress other than this one. */
export async function cleanUpAfter(api: Engine, agent: Agent, ctx: ArtifactContext, claimedByOthers: string[]): Promise<void> {
  const state = stateOf(ctx);
  const { assignment } = ctx;
  const installed = agent.state.current.installed[assignment.name];
  // Images another installed container artifact runs or may roll back to stay too.
  const othersKeep = Object.values(agent.state.current.installed)
    .filter((record) => record.name !== assignment.name)
    .flatMap((record) => [imageOfRecord(record)?.digest, imageOfRecord(record.previous)?.digest]);
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
    await removeImage(api, imageOfRecord(ctx.previous?.previous), keep, ctx.log);
  } else {
    // Not live: its image goes unless the current or previous version uses it.
    const keep = new Set([imageOfRecord(installed)?.digest, imageOfRecord(installed?.previous)?.digest, ...othersKeep, ...claimedByOthers]);
    await removeImage(api, state.image, keep, ctx.log);
  }
}

/** Removes an image the agent pulled, never one it did not, nor one still in use or kept. */
async function removeImage(api: Engine, image: ContainerPluginState['image'], keep: Set<string | undefined>, log: ArtifactContext['log']): Promise<void> {
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
