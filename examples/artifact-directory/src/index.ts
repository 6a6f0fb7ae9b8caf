// @vendor/artifact-directory: a whole directory tree, delivered as a (gzipped) tar archive,
// swapped atomically. Written only against @meshanics/core's public plugin API, as any
// vendor's plugin would be.
//
//   <data-dir>/artifacts/directory/<name>/current -> versions/<sha256 prefix>   (one rename switches it)
//   <data-dir>/artifacts/directory/<name>/versions/<...>                          current and previous kept
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tar from 'tar';
import { readSymlink, swapSymlink, type Agent, type ArtifactContext, type MeshanicsPlugin } from '@meshanics/core';
import { ARTIFACT_KIND, SPEC_SCHEMA, type DirectorySpec } from './schema.js';

export { ARTIFACT_KIND, SPEC_SCHEMA, type DirectorySpec } from './schema.js';

const PLUGIN_NAME = 'DirectoryArtifactPlugin';

function root(ctx: ArtifactContext): string {
  return path.join(ctx.dataDir, 'artifacts', ARTIFACT_KIND, ctx.assignment.name);
}

/** Unpacks into a fresh directory, refusing anything but plain files and directories. */
async function extract(archive: string, into: string, spec: DirectorySpec): Promise<void> {
  await fs.mkdir(into, { recursive: true, mode: 0o755 });
  let refused: string | undefined;
  await tar.x({
    file: archive,
    cwd: into,
    gzip: (spec.compression ?? 'gzip') === 'gzip',
    strict: true,
    // node-tar already strips absolute paths and ".." (preservePaths: false); links could
    // still point outside the tree, so they are refused outright.
    preservePaths: false,
    preserveOwner: false,
    filter: (entryPath, entry) => {
      const type = 'type' in entry ? entry.type : 'File';
      if (type !== 'File' && type !== 'Directory' && type !== 'OldFile' && type !== 'ContiguousFile') {
        refused ??= `${entryPath} (${type})`;
        return false;
      }
      return true;
    },
  });
  if (refused) throw new Error(`archive entry ${refused} is not a plain file or directory`);
}

export default class DirectoryArtifactPlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  readonly name = PLUGIN_NAME;
  readonly version = '1.0.0';
  readonly coreApi = '^0.1.0';
  readonly provides = { artifactKind: ARTIFACT_KIND };
  readonly specSchema = SPEC_SCHEMA;

  apply(agent: Agent): void {
    // Unpack while verifying: a broken archive fails before anything is live.
    agent.hooks.verify.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      if (!ctx.stagedFile) throw new Error('no verified target');
      await extract(ctx.stagedFile, path.join(ctx.stagingDir, 'tree'), ctx.spec as DirectorySpec);
    });

    agent.hooks.apply.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const base = root(ctx);
      const versionDir = path.join('versions', `${ctx.target!.sha256.slice(0, 16)}-${ctx.assignment.assignmentId.slice(0, 8)}`);
      await fs.mkdir(path.join(base, 'versions'), { recursive: true });
      const previous = await readSymlink(path.join(base, 'current'));
      // Rollback must know both ends before the live link moves.
      await ctx.checkpoint({ previous: previous ?? null, versionDir });
      await fs.rename(path.join(ctx.stagingDir, 'tree'), path.join(base, versionDir));
      await swapSymlink(path.join(base, 'current'), versionDir);
      ctx.liveChanged = true;
    });

    agent.hooks.rollback.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const { previous, versionDir } = ctx.pluginState as { previous?: string | null; versionDir?: string };
      if (versionDir === undefined) return; // nothing was changed
      const base = root(ctx);
      if (previous) await swapSymlink(path.join(base, 'current'), previous);
      else await fs.rm(path.join(base, 'current'), { force: true });
      if (versionDir !== previous) await fs.rm(path.join(base, versionDir), { recursive: true, force: true });
    });

    // Keep the live version and the one before it; everything else goes.
    agent.hooks.cleanup.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const base = root(ctx);
      const keep = new Set<string>();
      const current = await readSymlink(path.join(base, 'current'));
      if (current) keep.add(path.basename(current));
      const previous = (ctx.pluginState as { previous?: string | null }).previous;
      if (previous) keep.add(path.basename(previous));
      const installedPrevious = agent.state.current.installed[ctx.assignment.name]?.previous?.pluginState as { versionDir?: string } | undefined;
      if (installedPrevious?.versionDir) keep.add(path.basename(installedPrevious.versionDir));
      const entries = await fs.readdir(path.join(base, 'versions')).catch(() => [] as string[]);
      await Promise.all(entries.filter((e) => !keep.has(e)).map((e) => fs.rm(path.join(base, 'versions', e), { recursive: true, force: true })));
    });
  }
}
