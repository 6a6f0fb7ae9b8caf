// @vendor/firmware-ab: a firmware image written into the inactive one of two slots, made live
// by flipping a symlink (the A/B pattern of Mender, RAUC and SWUpdate), flipped back when the
// probe fails. The kit's flipToInactiveSlot does the crash-safe part.
//
//   <slotDir>/<artifact name>/current -> slot-a | slot-b      (the bootloader or service reads it)
import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  MeshError,
  assertWritableDestination,
  flipBack,
  flipToInactiveSlot,
  removeSlotLeftovers,
  type Agent,
  type ArtifactContext,
  type MeshanicsPlugin,
  type SlotFlipRecord,
} from '@meshanics/core';
import { ARTIFACT_KIND, SPEC_SCHEMA, type FirmwareSpec } from './schema.js';

export { ARTIFACT_KIND, SPEC_SCHEMA, type FirmwareSpec } from './schema.js';

const PLUGIN_NAME = 'FirmwareAbPlugin';
const SLOTS = ['slot-a', 'slot-b'] as const;

export interface FirmwareOptions {
  /** Where the slots live (must be under allowlist.writePaths); default <data-dir>/artifacts/firmware-ab. */
  slotDir?: string;
}

export default class FirmwareAbPlugin implements MeshanicsPlugin {
  static readonly optionsSchema = {
    type: 'object',
    additionalProperties: false,
    properties: { slotDir: { type: 'string', pattern: '^/' } },
  };
  readonly name = PLUGIN_NAME;
  readonly version = '1.0.0';
  readonly coreApi = '^0.1.0';
  readonly provides = { artifactKind: ARTIFACT_KIND };
  readonly specSchema = SPEC_SCHEMA;
  constructor(readonly options: FirmwareOptions = {}) {}

  link(ctx: ArtifactContext): string {
    return path.join(this.options.slotDir ?? path.join(ctx.dataDir, 'artifacts', ARTIFACT_KIND), ctx.assignment.name, 'current');
  }

  apply(agent: Agent): void {
    agent.hooks.verify.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const { magic } = ctx.spec as FirmwareSpec;
      const head = Buffer.alloc(magic.length / 2);
      const file = await fs.open(ctx.stagedFile!, 'r');
      await file.read(head, 0, head.length, 0).finally(() => file.close());
      if (head.toString('hex') !== magic) throw new MeshError('MESH_ERR_X_VENDOR_BAD_MAGIC', `image starts with ${head.toString('hex')}, not ${magic}`);
      if (this.options.slotDir) {
        for (const slot of SLOTS) await assertWritableDestination(agent.allowlist, path.join(path.dirname(this.link(ctx)), slot));
      }
    });
    agent.hooks.apply.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      await flipToInactiveSlot({ link: this.link(ctx), slots: SLOTS, source: ctx.stagedFile!, checkpoint: (flip) => ctx.checkpoint({ flip }) });
      ctx.liveChanged = true;
    });
    // Idempotent: after a restart mid-rollback it runs again from the checkpoint alone.
    agent.hooks.rollback.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      await flipBack(ctx.pluginState.flip as SlotFlipRecord | undefined);
    });
    agent.hooks.cleanup.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => removeSlotLeftovers(this.link(ctx), SLOTS));
  }
}
