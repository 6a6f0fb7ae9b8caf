// What the plugin checkpoints in the agent's durable state, and how it reads it back: rollback
// and cleanup work from this alone (after an agent restart or a reboot).
import type { InstalledArtifactRecord } from '@meshanics/core';

/** What the plugin checkpoints (JSON: it is persisted in the agent's state). */
export interface ContainerPluginState {
  image?: { ref: string; digest: string; id?: string; managed: boolean };
  /**
   * The image vanished from the local store after the download stage and was pulled once more;
   * a second disappearance gives the update up (image-pull.ts).
   */
  repulled?: boolean;
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

export function stateOf(ctx: { pluginState: Record<string, unknown> }): ContainerPluginState {
  return ctx.pluginState;
}

/** The image an installed version (or its previous one) checkpointed, if it is a container's. */
export function imageOfRecord(record: Omit<InstalledArtifactRecord, 'previous'> | undefined): ContainerPluginState['image'] {
  const image = (record?.pluginState as ContainerPluginState | undefined)?.image;
  return image && typeof image.ref === 'string' && typeof image.digest === 'string' ? image : undefined;
}
