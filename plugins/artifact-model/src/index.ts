// @meshanics/artifact-model: a model file swapped atomically under
//   <data-dir>/artifacts/model/<name>/<fileName>      the live file (one rename changes it)
//   <data-dir>/artifacts/model/<name>/.<fileName>.previous   the previous version (rollback = one rename back)
import path from 'node:path';
import { removeSwapLeftovers, swapBack, swapIn, type Agent, type ArtifactContext, type MeshanicsPlugin, type SwapRecord } from '@meshanics/core';
import { ARTIFACT_KIND, MODEL_SPEC_SCHEMA, type ModelSpec } from './schema.js';

export { ARTIFACT_KIND, MODEL_SPEC_SCHEMA, type ModelSpec } from './schema.js';

const PLUGIN_NAME = 'ModelArtifactPlugin';
const DEFAULT_FILE_NAME = 'model';

export function modelDir(dataDir: string, name: string): string {
  return path.join(dataDir, 'artifacts', ARTIFACT_KIND, name);
}

/** Where a model is live for the applications that read it. */
export function liveModelPath(dataDir: string, name: string, spec: ModelSpec): string {
  return path.join(modelDir(dataDir, name), spec.fileName ?? DEFAULT_FILE_NAME);
}

function backupPathOf(live: string): string {
  return path.join(path.dirname(live), `.${path.basename(live)}.previous`);
}

export default class ModelArtifactPlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  readonly name = PLUGIN_NAME;
  readonly version = '0.1.0';
  readonly provides = { artifactKind: ARTIFACT_KIND };
  readonly specSchema = MODEL_SPEC_SCHEMA;
  readonly coreApi = '^0.1.0';

  apply(agent: Agent): void {
    agent.hooks.apply.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx: ArtifactContext) => {
      const spec = ctx.spec as ModelSpec;
      if (!ctx.stagedFile) throw new Error('no verified target to apply');
      const live = liveModelPath(ctx.dataDir, ctx.assignment.name, spec);
      const record = await swapIn({
        source: ctx.stagedFile,
        destination: live,
        backupPath: backupPathOf(live),
        mode: 0o644,
        checkpoint: (swap) => ctx.checkpoint({ swap }),
      });
      ctx.liveChanged = true;
      ctx.log.info({ live, hadPrevious: record.hadPrevious }, 'model swapped in');
    });

    agent.hooks.rollback.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const swap = ctx.pluginState.swap as SwapRecord | undefined;
      await swapBack(swap);
      ctx.log.info({ why: ctx.why, restored: swap?.hadPrevious ?? false }, 'model rolled back');
    });

    agent.hooks.cleanup.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      // Only temp files a crash left beside the live file; current and previous stay.
      const spec = (ctx.spec ?? {}) as ModelSpec;
      await removeSwapLeftovers(liveModelPath(ctx.dataDir, ctx.assignment.name, spec));
    });
  }
}
