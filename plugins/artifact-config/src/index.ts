// @meshanics/artifact-config: a config file placed atomically at an allowlisted destination,
// then an allowlisted reload. Backup and swap are core's plugin kit (the same swap the model
// plugin uses); the swap record is checkpointed, so rollback works after an agent restart.
import path from 'node:path';
import { promises as fs } from 'node:fs';
import {
  MeshError,
  assertExecBinary,
  assertSystemdUnit,
  assertWritableDestination,
  describeRun,
  removeSwapLeftovers,
  runAllowlistedBinary,
  swapBack,
  swapIn,
  type Agent,
  type Allowlist,
  type MeshanicsPlugin,
  type SwapRecord,
} from '@meshanics/core';
import { ARTIFACT_KIND, CONFIG_SPEC_SCHEMA, type ConfigReload, type ConfigSpec } from './schema.js';

export { ARTIFACT_KIND, CONFIG_SPEC_SCHEMA, type ConfigReload, type ConfigSpec } from './schema.js';

const PLUGIN_NAME = 'ConfigArtifactPlugin';
const RELOAD_TIMEOUT_MS = 60_000;

export interface ConfigPluginOptions {
  /** The systemctl binary; fixed, not taken from any assignment. */
  systemctl?: string;
}

function backupPathOf(destination: string): string {
  return path.join(path.dirname(destination), `.${path.basename(destination)}.meshanics-previous`);
}

/** Checks every allowlist rule the spec touches before anything on disk changes. */
async function assertAllowed(allowlist: Allowlist, spec: ConfigSpec): Promise<void> {
  await assertWritableDestination(allowlist, spec.destination);
  const reload = spec.reload ?? 'none';
  if (reload === 'none') return;
  if ('systemdUnit' in reload) {
    assertSystemdUnit(allowlist, reload.systemdUnit);
  } else {
    assertExecBinary(allowlist, reload.exec[0]!);
  }
}

async function runReload(allowlist: Allowlist, reload: ConfigReload | undefined, systemctl: string, signal: AbortSignal): Promise<void> {
  if (!reload || reload === 'none') return;
  // systemctl is the agent's own fixed choice: it is not on the exec allowlist, the unit is.
  const argv = 'systemdUnit' in reload ? [systemctl, 'reload-or-restart', reload.systemdUnit] : reload.exec;
  const effective = 'systemdUnit' in reload ? { ...allowlist, execBinaries: [systemctl] } : allowlist;
  const result = await runAllowlistedBinary(effective, argv, { timeoutMs: RELOAD_TIMEOUT_MS, signal });
  if (result.exitCode !== 0 || result.timedOut) {
    throw new MeshError('MESH_ERR_RELOAD_FAILED', `reload ${JSON.stringify(argv)} failed: ${describeRun(result)}`);
  }
}

export default class ConfigArtifactPlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  readonly name = PLUGIN_NAME;
  readonly version = '0.1.0';
  readonly provides = { artifactKind: ARTIFACT_KIND };
  readonly specSchema = CONFIG_SPEC_SCHEMA;
  readonly coreApi = '^0.1.0';
  readonly #systemctl: string;

  constructor(options: ConfigPluginOptions = {}) {
    this.#systemctl = options.systemctl ?? '/usr/bin/systemctl';
  }

  apply(agent: Agent): void {
    const systemctl = this.#systemctl;

    // Refuse at validation, before anything is downloaded: allowlists are the device's word.
    agent.hooks.validate.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      await assertAllowed(agent.allowlist, ctx.spec as ConfigSpec);
    });

    agent.hooks.apply.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const spec = ctx.spec as ConfigSpec;
      // Again at apply: the file system may have changed since validation (a new symlink).
      await assertAllowed(agent.allowlist, spec);
      if (!ctx.stagedFile) throw new Error('no verified target to apply');
      await fs.mkdir(path.dirname(spec.destination), { recursive: true, mode: 0o755 });
      await swapIn({
        source: ctx.stagedFile,
        destination: spec.destination,
        backupPath: backupPathOf(spec.destination),
        mode: parseInt(spec.mode, 8),
        checkpoint: (swap) => ctx.checkpoint({ swap }),
      });
      ctx.liveChanged = true;
      await runReload(agent.allowlist, spec.reload, systemctl, ctx.signal);
      ctx.log.info({ destination: spec.destination }, 'config swapped in and reloaded');
    });

    agent.hooks.rollback.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const swap = ctx.pluginState.swap as SwapRecord | undefined;
      if (!swap) return; // nothing was swapped
      await swapBack(swap);
      // The restored file must be what the service runs with: reload again, with the spec
      // that was live before (it may name another unit or command), kept in the installed
      // record on disk so this also works after an agent restart.
      const previous = ctx.previous?.specJson ? (JSON.parse(ctx.previous.specJson) as ConfigSpec) : undefined;
      const reload = previous?.destination === swap.destination ? previous.reload : (ctx.spec as ConfigSpec | undefined)?.reload;
      await runReload(agent.allowlist, reload, systemctl, new AbortController().signal);
      ctx.log.info({ destination: swap.destination, why: ctx.why }, 'config rolled back');
    });

    agent.hooks.cleanup.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const spec = ctx.spec as ConfigSpec | undefined;
      if (spec?.destination) await removeSwapLeftovers(spec.destination);
    });
  }
}
