// Progression steps after status reports, coalesced per rollout. A step reads every device of
// the rollout under the write lock (O(devices)); during a wave of thousands of devices the
// reports arrive faster than steps finish, and one step per report made the work quadratic
// (10,000 devices: a handful of reports per second). Now at most one step per rollout runs
// and at most one more waits; every report that arrives meanwhile joins the waiting one,
// which starts after the running one and so sees all of them. Back-to-back steps are spaced
// by `minIntervalMs` (from start to start): a steady stream of reports then costs a few
// steps per second per rollout, not one after another as fast as they finish.
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../log.js';

interface Entry {
  running: Promise<void>;
  startedAt: number;
  /** The step that starts when `running` ends; shared by every request made meanwhile. */
  next?: Promise<void>;
}

export class RolloutDriveQueue {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly drive: (rolloutId: string) => Promise<unknown>,
    private readonly logger: Logger,
    private readonly minIntervalMs = 0,
  ) {}

  /** Resolves once a step that started after this call has finished (it never rejects). */
  request(rolloutId: string): Promise<void> {
    const entry = this.entries.get(rolloutId);
    if (entry === undefined) return this.start(rolloutId);
    entry.next ??= entry.running
      .then(() => delay(Math.max(0, entry.startedAt + this.minIntervalMs - Date.now())))
      .then(() => this.start(rolloutId));
    return entry.next;
  }

  private start(rolloutId: string): Promise<void> {
    const running = this.drive(rolloutId).then(
      () => undefined,
      (err: unknown) => this.logger.error({ err, rolloutId }, 'rollout progression after status reports failed'),
    );
    const entry: Entry = { running, startedAt: Date.now() };
    this.entries.set(rolloutId, entry);
    void running.then(() => {
      // A request that came in while this step ran has chained the next one onto it.
      if (this.entries.get(rolloutId) === entry && entry.next === undefined) this.entries.delete(rolloutId);
    });
    return running;
  }
}
