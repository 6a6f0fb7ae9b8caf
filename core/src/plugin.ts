import type { Logger } from 'pino';
import type { JsonSchema } from './contract/schema.js';
import type { Assignment } from './assignment.js';
import type { Agent } from './agent.js';

/** What a plugin contributes: one artifact kind or one probe type. */
export type PluginProvides = { artifactKind: string } | { probeType: string };

/**
 * The plugin contract. A plugin is a class (webpack style): a name, a version, what it
 * provides, the JSON Schema of its spec, and `apply(agent)` where it taps the hooks.
 */
export interface MeshanicsPlugin {
  readonly name: string;
  readonly version: string;
  readonly provides: PluginProvides;
  /** JSON Schema of the assignment's spec (artifact) or the probe's spec (probe). */
  readonly specSchema: JsonSchema;
  /**
   * The range of core plugin APIs this plugin works with (a semver range such as "^0.1.0");
   * the agent refuses to start with a plugin whose range excludes `Agent.CORE_API_VERSION`.
   */
  readonly coreApi: string;
  apply(agent: Agent): void;
}

/** The TUF-verified facts about a target: what every later stage trusts. */
export interface VerifiedTarget {
  targetPath: string;
  length: number;
  sha256: string;
  /**
   * What the publisher signed about this artifact in the target's TUF `custom` field
   * (kind and spec), when present. The agent holds the assignment to it.
   */
  signed?: { kind?: string; spec?: unknown };
}

/** What the validate hooks receive: the assignment and the spec the hook's plugin owns. */
export interface ValidationContext<Spec = unknown> {
  readonly assignment: Assignment;
  /** The artifact's spec (validate) or the probe's spec (validateProbe), already schema-valid. */
  readonly spec: Spec;
  readonly log: Logger;
}

/** The context every artifact stage hook receives. */
export interface ArtifactContext<Spec = unknown> {
  readonly assignment: Assignment;
  /** The assignment spec, validated against the plugin's schema. */
  readonly spec: Spec;
  /** Data directory of the agent; plugins keep their files under `artifacts/<kind>/`. */
  readonly dataDir: string;
  /** Scratch directory of this assignment; removed after cleanup. */
  readonly stagingDir: string;
  /** The verified target bytes (set once the target is downloaded and verified). */
  stagedFile: string | undefined;
  target: VerifiedTarget | undefined;
  /** What is installed under this artifact name now, if anything. */
  readonly previous: InstalledArtifactRecord | undefined;
  /**
   * Plugin-private state that must survive a crash (a swap record, a previous container id).
   * Persist it with `checkpoint` before any step a rollback would need to know about.
   */
  pluginState: Record<string, unknown>;
  /**
   * Set by the apply hook right after the live state changed (the swap happened). If apply
   * then fails (a reload, say), the outcome is ROLLED_BACK rather than FAILED: something
   * changed and was undone.
   */
  liveChanged: boolean;
  checkpoint(state: Record<string, unknown>): Promise<void>;
  /**
   * Progress while downloading (bytes done, bytes total). The agent reports the first call,
   * then at most one every PROGRESS_REPORT_INTERVAL_MS (5 s), and always the one with
   * done === total; calls in between are dropped.
   */
  reportProgress(done: number, total: number): void;
  readonly signal: AbortSignal;
  readonly log: Logger;
}

export interface RollbackContext<Spec = unknown> extends ArtifactContext<Spec> {
  /** Why the rollback happens (probe failure, failed apply, interrupted apply). */
  readonly why: string;
}

export interface ProbeAttemptContext<Spec = unknown> {
  readonly assignment: Assignment;
  readonly spec: Spec;
  readonly attempt: number;
  readonly attempts: number;
  readonly timeoutMs: number;
  /** Aborted at the timeout: stop and release everything (kill children, close sockets). */
  readonly signal: AbortSignal;
  readonly log: Logger;
}

export interface ProbeResult {
  healthy: boolean;
  /** A short human-readable outcome; goes into the report's reason. */
  detail: string;
}

export interface InstalledArtifactRecord {
  name: string;
  kind: string;
  version: string;
  sha256: string;
  assignmentId: string;
  specJson: string;
  installedAt: string;
  pluginState: Record<string, unknown>;
  previous?: Omit<InstalledArtifactRecord, 'previous'>;
}

export interface TransitionEvent {
  assignment: Assignment;
  state: import('./contract/messages.js').ArtifactState;
  reason: string;
  bytesDone: number;
  bytesTotal: number;
  at: Date;
}
