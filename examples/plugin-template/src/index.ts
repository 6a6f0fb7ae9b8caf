// A minimal artifact plugin. Core has already verified the target against TUF and the
// expected digest before any hook below runs; `ctx.stagedFile` holds those verified bytes.
import path from 'node:path';
import { swapBack, swapIn, type Agent, type MeshanicsPlugin, type SwapRecord } from '@meshanics/core';
import { ARTIFACT_KIND, SPEC_SCHEMA, type ExampleSpec } from './schema.js';

export { ARTIFACT_KIND, SPEC_SCHEMA } from './schema.js';

const PLUGIN_NAME = 'ExampleArtifactPlugin';

export default class ExampleArtifactPlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  readonly name = PLUGIN_NAME;
  readonly version = '0.1.0';
  /** The core plugin API range this plugin is written for; the agent refuses others. */
  readonly coreApi = '^0.1.0';
  readonly provides = { artifactKind: ARTIFACT_KIND };
  readonly specSchema = SPEC_SCHEMA;

  apply(agent: Agent): void {
    agent.hooks.apply.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const { fileName } = ctx.spec as ExampleSpec;
      const live = path.join(ctx.dataDir, 'artifacts', ARTIFACT_KIND, ctx.assignment.name, fileName);
      await swapIn({
        source: ctx.stagedFile!,
        destination: live,
        backupPath: path.join(path.dirname(live), `.${fileName}.previous`),
        mode: 0o644,
        // Persisted before the live file changes: rollback after a crash depends on it.
        checkpoint: (swap) => ctx.checkpoint({ swap }),
      });
      ctx.liveChanged = true;
    });
    // Must be idempotent: it may run again after the agent restarts mid-rollback.
    agent.hooks.rollback.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      await swapBack(ctx.pluginState.swap as SwapRecord | undefined);
    });
  }
}
