// The plugin class: options, the runtime's clients, and which function runs at each stage.
//   validate  bind mounts allowlisted (before anything is fetched or stopped)
//   download  descriptor == assignment spec; pull by digest (image-pull.ts)
//   verify    the local image holds the pinned digest (image-pull.ts)
//   apply     staging container, swap with the live one (container-swap.ts)
//   rollback  back to the previous container (container-swap.ts)
//   cleanup   backup container and images no version needs any more (image-cleanup.ts)
import type { Agent, MeshanicsPlugin } from '@meshanics/core';
import { assertDescriptorMatches, assertMountsAllowed } from './descriptor-checks.js';
import { connectEngine, waitForEngine, type Engines } from './engine.js';
import { cleanUpAfter } from './image-cleanup.js';
import { downloadImage, verifyImage } from './image-pull.js';
import { applyContainer, rollbackContainer } from './container-swap.js';
import { stateOf } from './plugin-state.js';
import { resolveRuntimeSocket, runtimeSocketCandidates, type ContainerRuntimeOption } from './runtime.js';
import { ARTIFACT_KIND, CONTAINER_SPEC_SCHEMA, parseImageReference, type ContainerSpec } from './schema.js';

const PLUGIN_NAME = 'ContainerArtifactPlugin';

export interface ContainerPluginOptions {
  /** auto (default) | podman | docker | absolute path of a Docker-API unix socket. */
  runtime?: ContainerRuntimeOption;
  /** Upper bound of one image pull (default 15 min). */
  pullTimeoutMs?: number;
  /** Idle guard on every other runtime call (default 3 min). */
  apiTimeoutMs?: number;
  /** How long a rollback waits for the runtime to answer (after a reboot); default 60 s. */
  runtimeWaitMs?: number;
}

export default class ContainerArtifactPlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  readonly name = PLUGIN_NAME;
  readonly version = '0.1.0';
  readonly coreApi = '^0.1.0';
  readonly provides = { artifactKind: ARTIFACT_KIND };
  readonly specSchema = CONTAINER_SPEC_SCHEMA;
  readonly runtime: ContainerRuntimeOption;
  readonly #pullTimeoutMs: number;
  readonly #apiTimeoutMs: number;
  readonly #runtimeWaitMs: number;
  readonly #engines = new Map<string, { api: Engines['api']; pull: Engines['pull'] }>();
  /**
   * Image digests claimed by updates in progress (assignment id -> digest), from the start of
   * their download to the end of their cleanup. The agent runs several pipelines at once and
   * the runtime has one image store: without this, one artifact's cleanup could remove an
   * image another artifact has just pulled and not yet created a container from.
   */
  readonly #claims = new Map<string, string>();

  constructor(options: ContainerPluginOptions = {}) {
    this.runtime = options.runtime ?? 'auto';
    runtimeSocketCandidates(this.runtime); // refuses a malformed option at load time
    this.#pullTimeoutMs = options.pullTimeoutMs ?? 15 * 60_000;
    this.#apiTimeoutMs = options.apiTimeoutMs ?? 3 * 60_000;
    this.#runtimeWaitMs = options.runtimeWaitMs ?? 60_000;
  }

  /** The runtime's socket, resolved at each use: a runtime started after the agent is found. */
  socketPath(): string {
    const socket = resolveRuntimeSocket(this.runtime);
    if (!socket) {
      throw new Error(`no container runtime socket found for runtime "${this.runtime}" (looked for ${runtimeSocketCandidates(this.runtime).join(', ')})`);
    }
    return socket;
  }

  async #engine(): Promise<Engines> {
    const socketPath = this.socketPath();
    let engines = this.#engines.get(socketPath);
    if (!engines) {
      engines = { api: await connectEngine(socketPath, this.#apiTimeoutMs), pull: await connectEngine(socketPath, 0) };
      this.#engines.set(socketPath, engines);
    }
    return { ...engines, socketPath };
  }

  apply(agent: Agent): void {
    // Before anything is fetched or stopped: a mount the device forbids ends FAILED, nothing changed.
    agent.hooks.validate.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, (ctx) => assertMountsAllowed(agent.allowlist, ctx.spec as ContainerSpec));

    agent.hooks.download.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      await assertDescriptorMatches(ctx);
      const engines = await this.#engine();
      await waitForEngine(engines.api, 0, engines.socketPath);
      this.#claims.set(ctx.assignment.assignmentId, parseImageReference((ctx.spec as ContainerSpec).image).digest);
      await downloadImage(engines, ctx, this.#pullTimeoutMs);
    });

    agent.hooks.verify.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      await verifyImage(await this.#engine(), ctx, this.#pullTimeoutMs);
    });

    agent.hooks.apply.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      // Again at apply: the file system may have changed since validation (a new symlink).
      await assertMountsAllowed(agent.allowlist, ctx.spec as ContainerSpec);
      await applyContainer(await this.#engine(), ctx, this.#pullTimeoutMs);
    });

    agent.hooks.rollback.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      await rollbackContainer(await this.#engine(), ctx, this.#runtimeWaitMs);
    });

    agent.hooks.cleanup.for(ARTIFACT_KIND).tapPromise(PLUGIN_NAME, async (ctx) => {
      const id = ctx.assignment.assignmentId;
      try {
        const state = stateOf(ctx);
        if (!state.image && !state.previous) return; // nothing of ours was created
        const { api } = await this.#engine();
        const claimedByOthers = [...this.#claims].filter(([other]) => other !== id).map(([, digest]) => digest);
        await cleanUpAfter(api, agent, ctx, claimedByOthers);
      } finally {
        this.#claims.delete(id);
      }
    });
  }
}
