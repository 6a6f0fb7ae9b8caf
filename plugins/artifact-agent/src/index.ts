// @meshanics/artifact-agent: the agent updates itself (issue 28). The artifact is the agent
// package's linux tarball for the device's architecture (`npm run package`).
//   verify   unpack into staging (after core's TUF verification), refuse a package whose
//            version is not the assignment's, whose architecture is not the device's, or
//            that is older than the running agent (unless allowDowngrade)
//   apply    install <root>/versions/<B> beside the running A, write the hand-over marker,
//            start the watchdog, switch `previous` to A and `current` to B (one rename each),
//            exit so the service manager starts B. B reports HEALTHY after its first answered
//            heartbeat; see core/src/runtime/self-update.ts for every other ending.
//   rollback only reached when A itself restarts during apply (before the hand-over): put
//            `current` back to A and remove B
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import semverCompare from 'semver/functions/compare.js';
import semverValid from 'semver/functions/valid.js';
import {
  HANDOVER_EXIT_CODE,
  MeshError,
  exists,
  pointLinkAt,
  readSelfUpdateMarker,
  readSymlink,
  selfUpdateMarkerPath,
  versionDirOf,
  writeSelfUpdateMarker,
  type Agent,
  type ArtifactContext,
  type MeshanicsPlugin,
} from '@meshanics/core';
import { inspectAgentPackage, unpackAgentPackage } from './agent-package.js';
import { ARTIFACT_KIND, AGENT_SPEC_SCHEMA, DEFAULT_HEALTH_DEADLINE_SECONDS, type AgentSpec } from './schema.js';
import { installVersionDir, pruneVersions, runningAgentVersion, versionsRootOf } from './versions.js';

export { ARTIFACT_KIND, AGENT_SPEC_SCHEMA, AGENT_ARCHITECTURES, DEFAULT_HEALTH_DEADLINE_SECONDS, type AgentSpec } from './schema.js';
export { inspectAgentPackage, unpackAgentPackage, PACKAGE_VERSIONS_DIR, type AgentPackage } from './agent-package.js';

const PLUGIN_NAME = 'AgentArtifactPlugin';

export interface AgentPluginOptions {
  /** The versions root; default: where the running agent was installed (versions.ts). */
  root?: string;
  /** The running version; default: the running core's package.json. */
  runningVersion?: string;
  /**
   * What to do when handing over; default: exit with HANDOVER_EXIT_CODE. Tests replace it
   * (the apply hook then never returns, as in the process that exits).
   */
  handOver?: () => void;
  /** Start the detached watchdog (default true). */
  watchdog?: boolean;
}

interface AgentPluginState {
  unpacked?: string;
  root?: string;
  from?: string;
  to?: string;
  createdTo?: boolean;
}

/** Fault injection for the kill -9 tests (tests/e2e/agent-self-update.test.ts): a real SIGKILL at a named point. */
function crashPoint(name: string): void {
  if (process.env.MESHANICS_TEST_SELF_UPDATE_KILL === name) process.kill(process.pid, 'SIGKILL');
}

function refuse(message: string): never {
  throw new MeshError('MESH_ERR_AGENT_UPDATE_REFUSED', message);
}

/** Older than the running version, by semver precedence (build metadata such as +g<sha> does not count). */
function isDowngrade(from: string, to: string): boolean {
  return Boolean(semverValid(from) && semverValid(to)) && semverCompare(to, from) < 0;
}

function startWatchdog(dataDir: string, assignmentId: string): void {
  const logFile = path.join(dataDir, 'logs', 'self-update-watchdog.log');
  const out = openSync(logFile, 'a', 0o600);
  const script = fileURLToPath(new URL('./watchdog.js', import.meta.url));
  // Detached, in its own session: it outlives this process and the hand-over.
  spawn(process.execPath, [script, dataDir, assignmentId], { detached: true, stdio: ['ignore', out, out] }).unref();
}

export default class AgentArtifactPlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  readonly name = PLUGIN_NAME;
  readonly version = '0.1.0';
  readonly provides = { artifactKind: ARTIFACT_KIND };
  readonly specSchema = AGENT_SPEC_SCHEMA;
  readonly coreApi = '^0.1.0';
  readonly #options: AgentPluginOptions;

  constructor(options: AgentPluginOptions = {}) {
    this.#options = options;
  }

  apply(agent: Agent): void {
    const options = this.#options;
    const rootOf = () => options.root ?? versionsRootOf(agent.dataDir);
    const running = () => options.runningVersion ?? runningAgentVersion();

    agent.hooks.verify.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const spec = ctx.spec as AgentSpec;
      const { version } = ctx.assignment;
      if (spec.architecture !== process.arch) {
        refuse(`the assignment is for ${spec.architecture} but this device is ${process.arch}`);
      }
      const from = running();
      if (version === from) refuse(`agent ${version} is the version already running`);
      if (isDowngrade(from, version) && !spec.allowDowngrade) {
        refuse(`agent ${version} is older than the running ${from}; set allowDowngrade in the spec to go back`);
      }
      const root = rootOf();
      if (!(await exists(versionDirOf(root, from)))) {
        refuse(
          `the running agent ${from} is not in ${path.join(root, 'versions')}: only an agent installed from the package (or a tarball unpacked with its layout) can update itself`,
        );
      }
      if (!ctx.stagedFile) throw new Error('no verified target to unpack');
      const unpackDir = path.join(ctx.stagingDir, 'unpacked');
      await unpackAgentPackage(ctx.stagedFile, unpackDir, ctx.signal);
      const pkg = await inspectAgentPackage(unpackDir);
      if (pkg.version !== version) refuse(`the package is agent ${pkg.version} but the artifact version is ${version}`);
      if (pkg.architecture !== spec.architecture) {
        refuse(`the package's bin/node is built for ${pkg.architecture} but the spec says ${spec.architecture}`);
      }
      await ctx.checkpoint({ unpacked: pkg.versionDir } satisfies AgentPluginState);
    });

    agent.hooks.apply.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const spec = ctx.spec as AgentSpec;
      const state = ctx.pluginState as AgentPluginState;
      if (!state.unpacked) throw new Error('the package was not unpacked at verify');
      const root = rootOf();
      const from = running();
      const to = ctx.assignment.version;
      // At most two versions: the running one and the new one (the older `previous` goes).
      await pruneVersions(root, [from, to]);
      const createdTo = !(await exists(versionDirOf(root, to)));
      await ctx.checkpoint({ root, from, to, createdTo } satisfies AgentPluginState);
      if (createdTo) await installVersionDir(state.unpacked, root, to);
      crashPoint('after-install');
      await this.#handOver(agent, ctx, spec, { root, from, to, createdTo });
    });

    agent.hooks.rollback.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const { root, from, to, createdTo } = ctx.pluginState as AgentPluginState;
      if (!root || !from || !to) return; // nothing was installed
      const marker = await readSelfUpdateMarker(ctx.dataDir);
      if (marker?.assignment.assignmentId === ctx.assignment.assignmentId) await fs.rm(selfUpdateMarkerPath(ctx.dataDir), { force: true });
      await pointLinkAt(root, 'current', from);
      if ((await readSymlink(path.join(root, 'previous'))) === path.join('versions', to)) await fs.rm(path.join(root, 'previous'), { force: true });
      if (createdTo) await fs.rm(versionDirOf(root, to), { recursive: true, force: true });
      ctx.log.info({ from, to, why: ctx.why }, 'agent update rolled back before the hand-over');
    });
  }

  async #handOver(agent: Agent, ctx: ArtifactContext, spec: AgentSpec, p: Required<Omit<AgentPluginState, 'unpacked'>>): Promise<void> {
    const seconds = spec.healthDeadlineSeconds ?? DEFAULT_HEALTH_DEADLINE_SECONDS;
    const now = Date.now();
    // The marker first: from here on a start of either version knows what is going on.
    await writeSelfUpdateMarker(agent.dataDir, {
      assignment: ctx.assignment,
      from: p.from,
      to: p.to,
      root: p.root,
      deadline: new Date(now + seconds * 1000).toISOString(),
      healthDeadlineSeconds: seconds,
      handedOverAt: new Date(now).toISOString(),
      pluginState: { root: p.root, from: p.from, to: p.to },
      createdTo: p.createdTo,
    });
    // The marker owns the assignment now: the in-flight journal entry goes, so no restart
    // takes the hand-over for an interrupted apply (recovery.ts would roll it back).
    await agent.state.update((draft) => {
      if (draft.inflight[ctx.assignment.name]?.assignment.assignmentId === ctx.assignment.assignmentId) {
        delete draft.inflight[ctx.assignment.name];
      }
    });
    crashPoint('before-switch');
    if (this.#options.watchdog !== false) startWatchdog(agent.dataDir, ctx.assignment.assignmentId);
    await pointLinkAt(p.root, 'previous', p.from);
    await pointLinkAt(p.root, 'current', p.to);
    ctx.liveChanged = true;
    crashPoint('after-switch');
    ctx.log.info({ from: p.from, to: p.to, deadlineSeconds: seconds }, 'handing over to the new agent');
    if (this.#options.handOver) this.#options.handOver();
    // Everything that matters is durable (marker, state, outbox); B sends what is queued.
    else setTimeout(() => process.exit(HANDOVER_EXIT_CODE), 100);
    await new Promise<never>(() => undefined);
  }
}
