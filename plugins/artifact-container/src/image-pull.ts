// The pinned image into the runtime's local store, and proof it is the one pinned:
//   download  pull by digest unless the image is already there (progress), checkpointed
//   verify    the local image's RepoDigests hold the pinned digest
//   re-pull   an image that vanished after the download stage is pulled once more, by the same
//             digest, before the update is given up (repullVanishedImage)
import { MeshError, type ArtifactContext } from '@meshanics/core';
import { inspectImage, pullImage, type Engines, type ImageInspectInfo } from './engine.js';
import { imageOfRecord, stateOf } from './plugin-state.js';
import { parseImageReference, type ContainerSpec } from './schema.js';

/** Pulls the pinned image unless present; checkpoints whether it is the agent's to remove later. */
export async function downloadImage(engines: Engines, ctx: ArtifactContext, pullTimeoutMs: number): Promise<void> {
  const spec = ctx.spec as ContainerSpec;
  const { digest } = parseImageReference(spec.image);
  const present = await inspectImage(engines.api, spec.image);
  // Ours to remove later only if we pulled it (or a version we installed did).
  const knownOurs = [ctx.previous, ctx.previous?.previous].some((r) => {
    const image = imageOfRecord(r);
    return image?.digest === digest && image.managed;
  });
  if (!present) {
    ctx.log.info({ image: spec.image }, 'pulling image');
    let last = 0;
    await pullImage(engines.pull, spec.image, {
      timeoutMs: pullTimeoutMs,
      signal: ctx.signal,
      onProgress: (done, total) => {
        // The agent sends at most one report per 5 s (pipeline.ts); this only spares it the calls.
        const now = Date.now();
        if (now - last < 250 && done < total) return;
        last = now;
        ctx.reportProgress(done, total);
      },
    });
  }
  await ctx.checkpoint({ image: { ref: spec.image, digest, managed: !present || knownOurs } });
}

/** The local image holds the pinned digest; its id is checkpointed. */
export async function verifyImage(engines: Engines, ctx: ArtifactContext, pullTimeoutMs: number): Promise<void> {
  const spec = ctx.spec as ContainerSpec;
  const { digest } = parseImageReference(spec.image);
  const info = (await inspectImage(engines.api, spec.image)) ?? (await repullVanishedImage(engines, ctx, pullTimeoutMs, 'between the download and the verification'));
  assertHoldsDigest(info, spec.image);
  const image = stateOf(ctx).image ?? { ref: spec.image, digest, managed: false };
  await ctx.checkpoint({ image: { ...image, id: info.Id } });
}

/** `MESH_ERR_DIGEST_MISMATCH` unless the image's RepoDigests hold the reference's digest. */
export function assertHoldsDigest(info: ImageInspectInfo, ref: string): void {
  const { repository, digest } = parseImageReference(ref);
  const normalize = (repo: string) => repo.replace(/^docker\.io\//, '').replace(/^library\//, '');
  const held = (info.RepoDigests ?? []).some((rd) => {
    const at = rd.lastIndexOf('@');
    return at > 0 && rd.slice(at + 1) === digest && normalize(rd.slice(0, at)) === normalize(repository);
  });
  if (!held) {
    throw new MeshError('MESH_ERR_DIGEST_MISMATCH', `local image ${info.Id} does not hold the pinned digest ${digest} (RepoDigests: ${JSON.stringify(info.RepoDigests ?? [])})`);
  }
}

/**
 * The image was there after the download stage and is gone now: something else sharing the
 * runtime's image store removed it (another agent's cleanup, an operator's prune; seen in the
 * test suite, where two simulated devices shared one store). The reference pins the digest of
 * the TUF-verified descriptor (download checked spec == descriptor), so pulling it again gets
 * the very same image, which is checked again. Once per assignment (checkpointed): a second
 * disappearance gives the update up with `MESH_ERR_DOWNLOAD_FAILED`.
 */
export async function repullVanishedImage(engines: Engines, ctx: ArtifactContext, pullTimeoutMs: number, when: string): Promise<ImageInspectInfo> {
  const spec = ctx.spec as ContainerSpec;
  if (stateOf(ctx).repulled) {
    throw new MeshError(
      'MESH_ERR_DOWNLOAD_FAILED',
      `image ${spec.image} vanished from the runtime's local store ${when}, a second time after it was pulled again: something on the device keeps removing it; update given up`,
    );
  }
  ctx.log.warn({ image: spec.image, when }, 'image vanished from the local store; pulling it again by digest');
  await ctx.checkpoint({ repulled: true });
  // No progress reports: the pipeline is past DOWNLOADING.
  await pullImage(engines.pull, spec.image, { timeoutMs: pullTimeoutMs, signal: ctx.signal, onProgress: () => undefined });
  const info = await inspectImage(engines.api, spec.image);
  if (!info) throw new MeshError('MESH_ERR_DOWNLOAD_FAILED', `image ${spec.image} is not in the runtime's local store right after it was pulled again`);
  assertHoldsDigest(info, spec.image);
  // The agent pulled it this time: its own to remove once no version uses it.
  await ctx.checkpoint({ image: { ref: spec.image, digest: parseImageReference(spec.image).digest, managed: true, id: info.Id } });
  return info;
}
