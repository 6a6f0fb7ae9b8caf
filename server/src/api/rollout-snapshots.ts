// What the rollout event streams of this process send, computed once for all of them. A
// rollout's detail carries every device: at 36,000 devices it was 0.8 s of this process's CPU
// and 9 MB of JSON (docs/benchmarks.md, "Rollout detail"), and every open stream computed it
// again every second. Now the streams of one rollout and view share one computation, and a
// snapshot is not computed again before SPACING_FACTOR times what the last one cost: however
// many consoles watch however large a rollout, its streams take a bounded share of the server
// (about 1/SPACING_FACTOR of a core per rollout and view), at the price of updates that come
// less often.
import type { RolloutView } from '../rollouts/index.js';

export type SnapshotView = RolloutView;

/** A snapshot is recomputed no sooner than this many times its own cost after it was taken. */
export const SPACING_FACTOR = 10;

interface Held {
  json: Promise<string>;
  /** When the snapshot's computation began: a stream polling every interval gets a new one each time. */
  startedAt: number;
  /** When it ended (undefined while in flight). */
  doneAt?: number;
  costMs: number;
  /** The JSON's length in UTF-16 code units (the last one's while this one is computed). */
  size: number;
}

/** What this process holds for the rollout event streams (scraped as metrics). */
export interface RolloutStreamStats {
  /** Open rollout event streams. */
  streams: number;
  /** Snapshots held (a rollout and view each). */
  snapshots: number;
  /** Characters of JSON the finished snapshots hold. */
  chars: number;
}

export class RolloutSnapshots {
  readonly #held = new Map<string, Held>();
  /** Open streams per rollout id. */
  readonly #streams = new Map<string, number>();

  constructor(
    private readonly compute: (id: string, view: SnapshotView) => Promise<unknown>,
    private readonly intervalMs: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  /** The rollout's snapshot as JSON: the one held while it is fresh enough, else a new one. */
  get(id: string, view: SnapshotView): Promise<string> {
    const key = `${view}:${id}`;
    const held = this.#held.get(key);
    const now = this.now();
    if (held && (held.doneAt === undefined || now - held.startedAt < this.intervalMs || now - held.doneAt < SPACING_FACTOR * held.costMs)) return held.json;
    const started = now;
    // Until it is done, the size of the one it replaces: the streams hold that JSON meanwhile.
    const entry: Held = { startedAt: started, costMs: 0, size: held?.size ?? 0, json: Promise.resolve('') };
    entry.json = this.compute(id, view).then(
      (value) => {
        const json = JSON.stringify(value);
        entry.doneAt = this.now();
        entry.costMs = entry.doneAt - started;
        entry.size = json.length;
        return json;
      },
      (err: unknown) => {
        // A failure is not kept: the next poll tries again.
        if (this.#held.get(key) === entry) this.#held.delete(key);
        throw err;
      },
    );
    this.#held.set(key, entry);
    return entry.json;
  }

  /**
   * Drops the rollout's snapshots: after an action through this process, so no stream sends
   * the state from before it (which the console would show over the action's answer).
   */
  forget(id: string): void {
    for (const view of ['detail', 'summary'] as const) this.#held.delete(`${view}:${id}`);
  }

  stats(): RolloutStreamStats {
    let streams = 0;
    for (const n of this.#streams.values()) streams += n;
    let chars = 0;
    for (const held of this.#held.values()) chars += held.size;
    return { streams, snapshots: this.#held.size, chars };
  }

  /** A stream of the rollout opened: its snapshots are kept until the last one closes. */
  open(id: string): void {
    this.#streams.set(id, (this.#streams.get(id) ?? 0) + 1);
  }

  /** A stream closed; the last one of a rollout forgets its snapshots (bounded memory). */
  close(id: string): void {
    const left = (this.#streams.get(id) ?? 1) - 1;
    if (left > 0) {
      this.#streams.set(id, left);
      return;
    }
    this.#streams.delete(id);
    this.forget(id);
  }
}
