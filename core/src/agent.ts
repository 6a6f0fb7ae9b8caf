import { pino, type Logger } from 'pino';
// Only the two functions use() needs: the semver index loads every module of the package.
import satisfies from 'semver/functions/satisfies.js';
import validRange from 'semver/ranges/valid.js';
import type { Capability } from './contract/messages.js';
import { PROBE_COMMON_SCHEMA, compileSchema, parseAndValidate, type SchemaValidator } from './contract/schema.js';
import { targetPathProblem } from './contract/tuf-layout.js';
import type { Assignment } from './assignment.js';
import { MeshError, reasonOf } from './errors.js';
import { createHooks, type AgentHooks } from './hooks.js';
import type { MeshanicsPlugin, TransitionEvent } from './plugin.js';
import { AgentStateStore } from './state/agent-state.js';
import type { TargetSource } from './target-source.js';
import { TERMINAL_STATES, type ArtifactState } from './contract/messages.js';
import type { AgentStateData } from './state/agent-state.js';
import { defaultAllowlist, type Allowlist } from './config/agent-config.js';
import type { DeviceTlsMaterial } from './transport/tls.js';

export interface AgentOptions {
  dataDir: string;
  targetSource: TargetSource;
  state: AgentStateStore;
  /** The device's allowlists; default: deny everything (loopback http probes only). */
  allowlist?: Allowlist;
  /** The device's TLS material, for plugins that talk to the device's own services. */
  tls?: DeviceTlsMaterial;
  logger?: Logger;
}

interface Registered {
  plugin: MeshanicsPlugin;
  validate: SchemaValidator;
}

export interface ValidatedAssignment {
  spec: unknown;
  probeSpec: unknown;
}

const probeCommon = compileSchema(PROBE_COMMON_SCHEMA, 'probe');

/**
 * The agent runtime: the hooks table, the plugins that tap it, and the durable state the
 * pipeline works on. Transport (gRPC, heartbeats) lives in runtime/; this class never talks
 * to the network itself.
 */
export class Agent {
  /** The version of the plugin API core offers. */
  static readonly CORE_API_VERSION = '0.1.0';

  readonly hooks: AgentHooks = createHooks();
  readonly dataDir: string;
  readonly targetSource: TargetSource;
  readonly state: AgentStateStore;
  readonly log: Logger;
  readonly allowlist: Allowlist;
  readonly tls: DeviceTlsMaterial | undefined;
  readonly #artifacts = new Map<string, Registered>();
  readonly #probes = new Map<string, Registered>();

  constructor(options: AgentOptions) {
    this.dataDir = options.dataDir;
    this.targetSource = options.targetSource;
    this.state = options.state;
    this.log = options.logger ?? pino({ level: 'silent' });
    this.allowlist = options.allowlist ?? defaultAllowlist();
    this.tls = options.tls;
  }

  /** Registers a plugin and lets it tap the hooks. */
  use(plugin: MeshanicsPlugin): this {
    if (!plugin || typeof plugin.apply !== 'function' || typeof plugin.name !== 'string' || !plugin.name) {
      throw new MeshError('MESH_ERR_PLUGIN_INVALID', 'a plugin needs a name and an apply(agent) method');
    }
    if (typeof plugin.version !== 'string' || !plugin.specSchema || typeof plugin.specSchema !== 'object') {
      throw new MeshError('MESH_ERR_PLUGIN_INVALID', `plugin ${plugin.name} needs a version and a specSchema`);
    }
    if (typeof plugin.coreApi !== 'string' || !validRange(plugin.coreApi)) {
      throw new MeshError('MESH_ERR_PLUGIN_INVALID', `plugin ${plugin.name} must declare the core API range it supports (coreApi, e.g. "^${Agent.CORE_API_VERSION}")`);
    }
    if (!satisfies(Agent.CORE_API_VERSION, plugin.coreApi)) {
      throw new MeshError(
        'MESH_ERR_PLUGIN_INVALID',
        `plugin ${plugin.name} ${plugin.version} supports core API ${plugin.coreApi}, but this agent offers ${Agent.CORE_API_VERSION}`,
      );
    }
    const provides = plugin.provides as Partial<{ artifactKind: string; probeType: string }>;
    const [table, key, root] = provides?.artifactKind
      ? [this.#artifacts, provides.artifactKind, 'spec']
      : provides?.probeType
        ? [this.#probes, provides.probeType, 'probe/spec']
        : [undefined, '', ''];
    if (!table) {
      throw new MeshError('MESH_ERR_PLUGIN_INVALID', `plugin ${plugin.name} must provide an artifactKind or a probeType`);
    }
    const existing = table.get(key);
    if (existing) {
      throw new MeshError('MESH_ERR_PLUGIN_DUPLICATE', `plugins ${existing.plugin.name} and ${plugin.name} both provide "${key}"`);
    }
    let validate: SchemaValidator;
    try {
      validate = compileSchema(plugin.specSchema, root);
    } catch (err) {
      throw new MeshError('MESH_ERR_PLUGIN_INVALID', `plugin ${plugin.name} has an invalid specSchema: ${(err as Error).message}`, { cause: err });
    }
    table.set(key, { plugin, validate });
    plugin.apply(this);
    return this;
  }

  /** What Register advertises: the artifact kinds and probe types this agent has plugins for. */
  capabilities(): Capability[] {
    return [
      ...[...this.#artifacts].map(([name, r]) => ({ kind: 'ARTIFACT' as const, name, version: r.plugin.version })),
      ...[...this.#probes].map(([name, r]) => ({ kind: 'PROBE' as const, name, version: r.plugin.version })),
    ];
  }

  hasArtifactKind(kind: string): boolean {
    return this.#artifacts.has(kind);
  }

  /**
   * Re-validates every field of an assignment against the plugins' schemas, even though the
   * server already did: the device trusts its own checks, not the control plane's.
   */
  validate(assignment: Assignment): ValidatedAssignment {
    const artifact = this.#artifacts.get(assignment.kind);
    if (!artifact) throw new MeshError('MESH_ERR_PLUGIN_MISSING', `no plugin for artifact kind "${assignment.kind}"`);
    const pathProblem = targetPathProblem(assignment.targetPath);
    if (pathProblem) throw new MeshError('MESH_ERR_SPEC_INVALID', `targetPath ${JSON.stringify(assignment.targetPath)} ${pathProblem}`);
    if (!/^[0-9a-f]{64}$/.test(assignment.expectedSha256)) {
      throw new MeshError('MESH_ERR_SPEC_INVALID', 'expectedSha256 must be 64 lowercase hex characters');
    }
    if (!Number.isSafeInteger(assignment.expectedLength) || assignment.expectedLength < 0) {
      throw new MeshError('MESH_ERR_SPEC_INVALID', 'expectedLength must be a non-negative integer');
    }
    const spec = parseAndValidate(assignment.specJson, artifact.validate, 'spec');
    if (!spec.ok) throw new MeshError('MESH_ERR_SPEC_INVALID', spec.errors.join('; '));
    const { specJson: _probeSpecJson, ...probeFields } = assignment.probe;
    const common = probeCommon(probeFields);
    if (!common.ok) throw new MeshError('MESH_ERR_SPEC_INVALID', common.errors.join('; '));
    const probe = this.#probes.get(assignment.probe.type);
    if (!probe) throw new MeshError('MESH_ERR_PLUGIN_MISSING', `no plugin for probe type "${assignment.probe.type}"`);
    const probeSpec = parseAndValidate(assignment.probe.specJson, probe.validate, 'probe/spec');
    if (!probeSpec.ok) throw new MeshError('MESH_ERR_SPEC_INVALID', probeSpec.errors.join('; '));
    return { spec: spec.value, probeSpec: probeSpec.value };
  }

  /**
   * validate(), then every plugin's allowlist checks through the validate hooks (the artifact
   * kind's, then the probe type's). Runs before anything is downloaded, so a refusal changes
   * nothing. A plugin's MeshError (MESH_ERR_ALLOWLIST_DENIED naming the rule) is the reason as
   * it is; any other error is wrapped with the hook's name.
   */
  async revalidate(assignment: Assignment): Promise<ValidatedAssignment> {
    const validated = this.validate(assignment);
    const log = this.log.child({ assignmentId: assignment.assignmentId });
    const checks = [
      ['validate', this.hooks.validate.get(assignment.kind), validated.spec, `kind "${assignment.kind}"`],
      ['validateProbe', this.hooks.validateProbe.get(assignment.probe.type), validated.probeSpec, `probe type "${assignment.probe.type}"`],
    ] as const;
    for (const [name, hook, spec, of] of checks) {
      if (!hook) continue;
      try {
        await hook.promise({ assignment, spec, log });
      } catch (err) {
        if (err instanceof MeshError) throw err;
        throw new MeshError('MESH_ERR_PLUGIN_FAILED', `${name} hook for ${of} failed: ${reasonOf(err)}`, { cause: err });
      }
    }
    return validated;
  }

  /**
   * Persists a transition together with its report (one atomic write), then tells the
   * observers. `mutate` carries the state change the transition stands for.
   */
  async transition(
    assignment: Assignment,
    state: ArtifactState,
    reason = '',
    progress: { bytesDone?: number; bytesTotal?: number } = {},
    mutate?: (draft: AgentStateData) => void,
  ): Promise<void> {
    const at = new Date();
    const event: TransitionEvent = {
      assignment,
      state,
      reason,
      bytesDone: progress.bytesDone ?? 0,
      bytesTotal: progress.bytesTotal ?? 0,
      at,
    };
    await this.state.update((draft) => {
      mutate?.(draft);
      if (TERMINAL_STATES.has(state)) {
        draft.completed[assignment.assignmentId] = { name: assignment.name, state, at: at.toISOString() };
        if (draft.inflight[assignment.name]?.assignment.assignmentId === assignment.assignmentId) {
          delete draft.inflight[assignment.name];
        }
      }
      AgentStateStore.enqueue(draft, {
        assignmentId: assignment.assignmentId,
        state,
        reason,
        bytesDone: event.bytesDone,
        bytesTotal: event.bytesTotal,
        deviceTime: at.toISOString(),
      });
    });
    try {
      await this.hooks.transition.promise(event);
    } catch (err) {
      // An observer's failure must never change an assignment's outcome; the report is queued.
      this.log.error({ err, state, assignmentId: assignment.assignmentId }, 'transition observer failed');
    }
  }
}
