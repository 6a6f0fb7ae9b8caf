// The agent's durable state: one JSON document, written atomically on every change.
//
// Keeping the installed versions, the in-flight pipeline and the report outbox in ONE file
// is deliberate: a state change and the report that announces it are persisted by the same
// rename, so after a crash there is never a report without its state or a state without
// its report.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ArtifactState, ReportArtifactStatusRequest } from '../contract/messages.js';
import type { Assignment } from '../assignment.js';
import { MeshError } from '../errors.js';
import { writeJsonAtomic } from '../kit/atomic-file.js';
import type { InstalledArtifactRecord, VerifiedTarget } from '../plugin.js';

export type InflightPhase = 'downloading' | 'verifying' | 'applying' | 'probing' | 'rolling_back';

export interface InflightRecord {
  assignment: Assignment;
  phase: InflightPhase;
  target?: VerifiedTarget;
  pluginState: Record<string, unknown>;
  startedAt: string;
}

/** A queued report is exactly the request that will carry it. */
export type PendingReport = ReportArtifactStatusRequest;

export interface CompletedRecord {
  name: string;
  state: ArtifactState;
  at: string;
}

export interface AgentStateData {
  formatVersion: 1;
  /** Next sequence number for a status report; only ever grows (the server drops anything lower). */
  nextSequence: number;
  /** By artifact name. */
  installed: Record<string, InstalledArtifactRecord>;
  /** By artifact name: at most one pipeline per name. */
  inflight: Record<string, InflightRecord>;
  /** By assignment id: assignments that reached a terminal state and must not run again. */
  completed: Record<string, CompletedRecord>;
  /** Reports not yet acknowledged by the server, in sequence order. */
  outbox: PendingReport[];
}

function emptyState(): AgentStateData {
  return { formatVersion: 1, nextSequence: 1, installed: {}, inflight: {}, completed: {}, outbox: [] };
}

export class AgentStateStore {
  readonly file: string;
  #state: AgentStateData;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(file: string, state: AgentStateData) {
    this.file = file;
    this.#state = state;
  }

  static async open(dataDir: string): Promise<AgentStateStore> {
    const dir = path.join(dataDir, 'state');
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, 'agent-state.json');
    let state: AgentStateData;
    try {
      const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as AgentStateData;
      if (parsed?.formatVersion !== 1 || typeof parsed.nextSequence !== 'number' || !Array.isArray(parsed.outbox)) {
        throw new Error('unexpected format');
      }
      state = { ...emptyState(), ...parsed };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        // Writes are atomic, so this is tampering or disk damage: stop rather than guess.
        throw new MeshError('MESH_ERR_STATE_CORRUPT', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
      }
      state = emptyState();
    }
    return new AgentStateStore(file, state);
  }

  /** The current state; treat as read-only (mutate only through `update`). */
  get current(): Readonly<AgentStateData> {
    return this.#state;
  }

  /**
   * Applies `mutate` to a copy, persists it atomically, then makes it current. Updates are
   * serialized so concurrent pipelines never lose each other's changes.
   */
  update<T>(mutate: (draft: AgentStateData) => T): Promise<T> {
    const run = async (): Promise<T> => {
      const draft = structuredClone(this.#state);
      const result = mutate(draft);
      await writeJsonAtomic(this.file, draft);
      this.#state = draft;
      return result;
    };
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** Queues a report inside a state update: call from within `update`. */
  static enqueue(draft: AgentStateData, report: Omit<PendingReport, 'sequence'>): PendingReport {
    const pending: PendingReport = { ...report, sequence: draft.nextSequence };
    draft.nextSequence += 1;
    if (report.state === 'DOWNLOADING') {
      // Progress reports supersede each other: only the newest unsent one matters.
      draft.outbox = draft.outbox.filter(
        (r) => !(r.assignmentId === report.assignmentId && r.state === 'DOWNLOADING' && r.bytesDone > 0),
      );
    }
    draft.outbox.push(pending);
    return pending;
  }
}
