// The agent's durable state: one JSON document, written atomically on every change.
//
// Keeping the installed versions, the in-flight pipeline and the report outbox in ONE file
// is deliberate: a state change and the report that announces it are persisted by the same
// rename, so after a crash there is never a report without its state or a state without
// its report.
//
// Writes are group-committed: updates that arrive while a write is in progress are applied,
// in order, to one draft and persisted by ONE atomic write (temp file, fsync, rename, fsync
// of the directory). Nobody waits for a timer, and nothing becomes current, or resolves its
// caller, before the write that carries it is durable. So N concurrent transitions cost a
// few writes instead of N, and a burst of them never leaves a report sent ahead of its state.
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
  /** Set when the network held the download back (pipeline.ts): the next run resumes it. */
  heldByNetwork?: boolean;
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

const STATE_FILE = 'agent-state.json';
/** Temp files of our own atomic writes of it (`writeFileAtomic`: `.<name>.tmp-<hex>`). */
const STATE_TEMP = /^\.agent-state\.json\.tmp-[0-9a-f]+$/;

interface PendingUpdate {
  mutate: (draft: AgentStateData) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

function emptyState(): AgentStateData {
  return { formatVersion: 1, nextSequence: 1, installed: {}, inflight: {}, completed: {}, outbox: [] };
}

export class AgentStateStore {
  readonly file: string;
  /** Leftover temp files of interrupted state writes that `open` removed. */
  readonly removedTempFiles: readonly string[];
  #state: AgentStateData;
  #pending: PendingUpdate[] = [];
  #writing = false;
  #writes = 0;

  private constructor(file: string, state: AgentStateData, removedTempFiles: string[]) {
    this.file = file;
    this.#state = state;
    this.removedTempFiles = removedTempFiles;
  }

  static async open(dataDir: string): Promise<AgentStateStore> {
    const dir = path.join(dataDir, 'state');
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, STATE_FILE);
    // A crash between "temp file written" and "renamed" leaves the temp file behind; the
    // state file itself is intact (old or new). Only our own naming pattern, only here.
    const removed: string[] = [];
    for (const entry of await fs.readdir(dir)) {
      if (!STATE_TEMP.test(entry)) continue;
      await fs.rm(path.join(dir, entry), { force: true });
      removed.push(entry);
    }
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
    return new AgentStateStore(file, state, removed);
  }

  /** The current state; treat as read-only (mutate only through `update`). */
  get current(): Readonly<AgentStateData> {
    return this.#state;
  }

  /** How many times the state file was written since `open` (group commits count once). */
  get writes(): number {
    return this.#writes;
  }

  /**
   * Applies `mutate` to a copy, persists it atomically, then makes it current and resolves.
   * Updates are applied in call order, so concurrent pipelines never lose each other's
   * changes; those that arrive while a write is in progress share the next write. A
   * `mutate` that throws rejects its own call only (nothing of it is written).
   */
  update<T>(mutate: (draft: AgentStateData) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ mutate, resolve: resolve as (value: unknown) => void, reject });
      // Fire-and-forget: the loop settles every update's own promise and never rejects.
      if (!this.#writing) void this.#commitLoop();
    });
  }

  async #commitLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0, this.#pending.length);
        const { draft, applied } = this.#apply(batch);
        if (applied.length === 0) continue;
        try {
          await writeJsonAtomic(this.file, draft);
          this.#writes += 1;
        } catch (err) {
          for (const { op } of applied) op.reject(err);
          continue;
        }
        this.#state = draft;
        for (const { op, result } of applied) op.resolve(result);
      }
    } finally {
      this.#writing = false;
    }
  }

  /** Applies a batch to one draft; an update that throws is rejected and left out. */
  #apply(batch: PendingUpdate[]): { draft: AgentStateData; applied: Array<{ op: PendingUpdate; result: unknown }> } {
    let ops = batch;
    for (;;) {
      const draft = structuredClone(this.#state);
      const applied: Array<{ op: PendingUpdate; result: unknown }> = [];
      let failed: PendingUpdate | undefined;
      for (const op of ops) {
        try {
          applied.push({ op, result: op.mutate(draft) });
        } catch (err) {
          // It may have half-changed the draft: reject it and rebuild without it (the others
          // run again on a fresh copy; mutations are functions of the draft alone).
          op.reject(err);
          failed = op;
          break;
        }
      }
      if (!failed) return { draft, applied };
      ops = ops.filter((op) => op !== failed);
    }
  }

  /** Queues a report inside a state update: call from within `update`. */
  static enqueue(draft: AgentStateData, report: Omit<PendingReport, 'sequence'>): PendingReport {
    const pending: PendingReport = { ...report, sequence: draft.nextSequence };
    draft.nextSequence += 1;
    if (report.state === 'DOWNLOADING') {
      // Progress reports supersede each other: only the newest unsent one matters.
      draft.outbox = draft.outbox.filter((r) => !(r.assignmentId === report.assignmentId && r.state === 'DOWNLOADING' && r.bytesDone > 0));
    }
    draft.outbox.push(pending);
    return pending;
  }
}
