// Convergence: compare the desired assignments with what the device has and start the
// pipelines that are missing. One pipeline per artifact name at a time; an assignment that
// already ended (healthy, rolled back or failed) never runs again; an assignment whose
// version is already installed and healthy is reported healthy without being re-applied.
//
// Bounded: at most `maxConcurrent` pipelines run at once (the rest wait in a queue, in a
// deterministic order: interrupted work first, then the order of the server's reply), and
// one reply is taken for at most `maxAssignments` artifact names (the server's own limit on
// what a device may report as installed); a reply past that is logged as an error and the
// names past the limit are ignored. A buggy or compromised control plane that sends
// thousands of assignments therefore cannot stall the agent's reports or exhaust its memory.
import type { Agent } from './agent.js';
import type { Assignment } from './assignment.js';
import { reasonOf } from './errors.js';
import { runPipeline } from './pipeline.js';

/** Pipelines running at once. Updates are I/O-bound; a device rarely has more artifacts. */
export const MAX_CONCURRENT_PIPELINES = 4;
/** Artifact names taken from one heartbeat reply (the server refuses more installed ones). */
export const MAX_ASSIGNMENTS_PER_REPLY = 256;

export interface ReconcilerOptions {
  maxConcurrent?: number;
  maxAssignments?: number;
  /**
   * Assignments something else owns for now and no pipeline may start for (a self-update on
   * trial: the hand-over marker decides how it ends, runtime/self-update.ts).
   */
  isHeld?: (assignment: Assignment) => boolean;
}

export class Reconciler {
  readonly #agent: Agent;
  readonly #running = new Map<string, Promise<void>>();
  /** By artifact name, in start order; always follows the latest desired state. */
  #queued = new Map<string, Assignment>();
  readonly #abort = new AbortController();
  readonly #maxConcurrent: number;
  readonly #maxAssignments: number;
  readonly #isHeld: (assignment: Assignment) => boolean;
  #lastOverflow = 0;

  constructor(agent: Agent, options: ReconcilerOptions = {}) {
    this.#agent = agent;
    this.#maxConcurrent = Math.max(1, options.maxConcurrent ?? MAX_CONCURRENT_PIPELINES);
    this.#maxAssignments = Math.max(1, options.maxAssignments ?? MAX_ASSIGNMENTS_PER_REPLY);
    this.#isHeld = options.isHeld ?? (() => false);
  }

  /** Starts (or queues) what the desired state needs; returns without waiting for the pipelines. */
  async reconcile(desired: Assignment[]): Promise<void> {
    const agent = this.#agent;
    // The server sends one assignment per name; if it ever sends more, the first wins.
    const byName = new Map<string, Assignment>();
    for (const assignment of desired) if (!byName.has(assignment.name)) byName.set(assignment.name, assignment);
    let taken = [...byName.values()];
    if (taken.length > this.#maxAssignments) {
      if (this.#lastOverflow !== taken.length) {
        agent.log.error(
          { assignments: desired.length, artifacts: taken.length, limit: this.#maxAssignments },
          `heartbeat reply assigns more artifacts than an agent takes; only the first ${this.#maxAssignments} are considered`,
        );
      }
      this.#lastOverflow = taken.length;
      taken = taken.slice(0, this.#maxAssignments);
    } else {
      this.#lastOverflow = 0;
    }
    const wanted = new Set(taken.map((a) => a.assignmentId));
    // Forget terminal outcomes the server no longer asks about, so the record stays small.
    const stale = Object.keys(agent.state.current.completed).filter((id) => !wanted.has(id));
    if (stale.length > 0) {
      await agent.state.update((draft) => {
        for (const id of stale) delete draft.completed[id];
      });
    }
    const queue: Assignment[] = [];
    for (const assignment of taken) {
      if (agent.state.current.completed[assignment.assignmentId]) continue;
      if (this.#running.has(assignment.name)) continue;
      if (this.#isHeld(assignment)) continue;
      const installed = agent.state.current.installed[assignment.name];
      if (installed && installed.version === assignment.version && installed.sha256 === assignment.expectedSha256 && installed.kind === assignment.kind) {
        await agent.transition(assignment, 'HEALTHY', `version ${assignment.version} already installed and healthy`, {}, (draft) => {
          const record = draft.installed[assignment.name];
          if (record) record.assignmentId = assignment.assignmentId;
        });
        continue;
      }
      queue.push(assignment);
    }
    // Work a crash interrupted (a download to resume) goes first; otherwise the reply's order.
    const inflight = agent.state.current.inflight;
    const resumed = queue.filter((a) => inflight[a.name]?.assignment.assignmentId === a.assignmentId);
    const fresh = queue.filter((a) => inflight[a.name]?.assignment.assignmentId !== a.assignmentId);
    this.#queued = new Map([...resumed, ...fresh].map((a) => [a.name, a]));
    this.#pump();
  }

  #pump(): void {
    const agent = this.#agent;
    while (!this.#abort.signal.aborted && this.#running.size < this.#maxConcurrent && this.#queued.size > 0) {
      const [name, assignment] = this.#queued.entries().next().value as [string, Assignment];
      this.#queued.delete(name);
      if (this.#running.has(name) || agent.state.current.completed[assignment.assignmentId] || this.#isHeld(assignment)) continue;
      const run = runPipeline(agent, assignment, this.#abort.signal)
        .then(() => undefined)
        .catch((err: unknown) => {
          agent.log.error({ err: reasonOf(err), assignmentId: assignment.assignmentId }, 'pipeline crashed');
        })
        .finally(() => {
          this.#running.delete(name);
          this.#pump();
        });
      this.#running.set(name, run);
    }
  }

  /** Resolves when every running and queued pipeline has finished (queued ones are dropped on abort). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running.values()]);
  }

  get busy(): boolean {
    return this.#running.size > 0 || this.#queued.size > 0;
  }

  /** Pipelines running now and waiting in the queue. */
  get load(): { running: number; queued: number } {
    return { running: this.#running.size, queued: this.#queued.size };
  }

  abort(reason: string): void {
    this.#queued.clear();
    this.#abort.abort(new Error(reason));
  }
}
