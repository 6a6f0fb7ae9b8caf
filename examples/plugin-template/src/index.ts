// A minimal artifact plugin: one file, swapped in atomically. Core has already verified the
// target against TUF and the expected digest before any hook below runs; `ctx.stagedFile`
// holds those verified bytes.
import path from 'node:path';
import { MeshError, swapBack, swapIn, type Agent, type MeshanicsPlugin, type SwapRecord } from '@meshanics/core';
import { ARTIFACT_KIND, SPEC_SCHEMA, type ExampleSpec } from './schema.js';

export { ARTIFACT_KIND, SPEC_SCHEMA } from './schema.js';

const PLUGIN_NAME = 'ExampleArtifactPlugin';

/** The device's say, from agent.json: `{ "name": "<this package>", "options": { "maxBytes": 1048576 } }`. */
export interface ExampleOptions {
  maxBytes?: number;
}

export default class ExampleArtifactPlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  /** Checked by the agent at start: a wrong option stops it with the path and the rule (exit 2). */
  static readonly optionsSchema = {
    type: 'object',
    additionalProperties: false,
    properties: { maxBytes: { type: 'integer', minimum: 1 } },
  };
  readonly name = PLUGIN_NAME;
  readonly version = '0.1.0';
  /** The core plugin API range this plugin is written for; the agent refuses others. */
  readonly coreApi = '^0.1.0';
  readonly provides = { artifactKind: ARTIFACT_KIND };
  readonly specSchema = SPEC_SCHEMA;
  readonly #maxBytes: number;

  constructor(options: ExampleOptions = {}) {
    this.#maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
  }

  apply(agent: Agent): void {
    agent.hooks.verify.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      // Your own code, under the vendor prefix MESH_ERR_X_<VENDOR>_: it reaches the report as is.
      if (ctx.target!.length > this.#maxBytes) {
        throw new MeshError('MESH_ERR_X_EXAMPLE_TOO_LARGE', `${ctx.target!.length} bytes is more than maxBytes ${this.#maxBytes}`);
      }
    });
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
