// Convergence: compare the desired assignments with what the device has and start the
// pipelines that are missing. One pipeline per artifact name at a time; an assignment that
// already ended (healthy, rolled back or failed) never runs again; an assignment whose
// version is already installed and healthy is reported healthy without being re-applied.
import type { Agent } from './agent.js';
import type { Assignment } from './assignment.js';
import { reasonOf } from './errors.js';
import { runPipeline } from './pipeline.js';

export class Reconciler {
  readonly #agent: Agent;
  readonly #running = new Map<string, Promise<void>>();
  readonly #abort = new AbortController();

  constructor(agent: Agent) {
    this.#agent = agent;
  }

  /** Starts what the desired state needs; returns without waiting for the pipelines. */
  async reconcile(desired: Assignment[]): Promise<void> {
    const agent = this.#agent;
    const wanted = new Set(desired.map((a) => a.assignmentId));
    // Forget terminal outcomes the server no longer asks about, so the record stays small.
    const stale = Object.keys(agent.state.current.completed).filter((id) => !wanted.has(id));
    if (stale.length > 0) {
      await agent.state.update((draft) => {
        for (const id of stale) delete draft.completed[id];
      });
    }
    const seen = new Set<string>();
    for (const assignment of desired) {
      // The server sends one assignment per name; if it ever sends more, the first wins.
      if (seen.has(assignment.name)) continue;
      seen.add(assignment.name);
      if (agent.state.current.completed[assignment.assignmentId]) continue;
      if (this.#running.has(assignment.name)) continue;
      const installed = agent.state.current.installed[assignment.name];
      if (
        installed &&
        installed.version === assignment.version &&
        installed.sha256 === assignment.expectedSha256 &&
        installed.kind === assignment.kind
      ) {
        await agent.transition(assignment, 'HEALTHY', `version ${assignment.version} already installed and healthy`, {}, (draft) => {
          const record = draft.installed[assignment.name];
          if (record) record.assignmentId = assignment.assignmentId;
        });
        continue;
      }
      const run = runPipeline(agent, assignment, this.#abort.signal)
        .then(() => undefined)
        .catch((err: unknown) => {
          agent.log.error({ err: reasonOf(err), assignmentId: assignment.assignmentId }, 'pipeline crashed');
        })
        .finally(() => this.#running.delete(assignment.name));
      this.#running.set(assignment.name, run);
    }
  }

  /** Resolves when every running pipeline has finished. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running.values()]);
  }

  get busy(): boolean {
    return this.#running.size > 0;
  }

  abort(reason: string): void {
    this.#abort.abort(new Error(reason));
  }
}
