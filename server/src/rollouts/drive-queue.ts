// Progression steps after status reports, coalesced and spaced per rollout. A step that acts
// counts the rollout's devices under the write lock (O(devices)), and even one that only
// glances (engine.ts) is a query; during a wave of thousands of devices reports arrive far
// faster than that is worth doing, and one step per report made the work quadratic (10,000
// devices: a handful of reports per second). Here a rollout gets at most
// one step per `minIntervalMs` (start to start): requests made meanwhile all wait for the
// next step, which starts after the one running (if any) and so sees every report before it.
import type { Logger } from '../observability/log.js';

interface RolloutState {
  running: boolean;
  lastStart: number;
  timer: NodeJS.Timeout | undefined;
  /** Requests that the next step answers. */
  waiting: Array<() => void>;
}

export class RolloutDriveQueue {
  private readonly states = new Map<string, RolloutState>();

  constructor(
    private readonly drive: (rolloutId: string) => Promise<unknown>,
    private readonly logger: Logger,
    private readonly minIntervalMs = 0,
  ) {}

  /** Resolves once a step that started after this call has finished (it never rejects). */
  request(rolloutId: string): Promise<void> {
    let state = this.states.get(rolloutId);
    if (!state) {
      state = { running: false, lastStart: -Infinity, timer: undefined, waiting: [] };
      this.states.set(rolloutId, state);
    }
    const s = state;
    return new Promise<void>((resolve) => {
      s.waiting.push(resolve);
      this.schedule(rolloutId, s);
    });
  }

  private schedule(rolloutId: string, s: RolloutState): void {
    if (s.running || s.timer || s.waiting.length === 0) return;
    const wait = s.lastStart + this.minIntervalMs - Date.now();
    if (wait > 0) {
      s.timer = setTimeout(() => {
        s.timer = undefined;
        this.schedule(rolloutId, s);
      }, wait);
      return;
    }
    const answered = s.waiting;
    s.waiting = [];
    s.running = true;
    s.lastStart = Date.now();
    void this.drive(rolloutId)
      .catch((err: unknown) => this.logger.error({ err, rolloutId }, 'rollout progression after status reports failed'))
      .finally(() => {
        s.running = false;
        for (const resolve of answered) resolve();
        if (s.waiting.length > 0) this.schedule(rolloutId, s);
        // Forget an idle rollout once its spacing no longer matters.
        else if (this.minIntervalMs === 0) this.states.delete(rolloutId);
        else {
          setTimeout(() => {
            if (!s.running && !s.timer && s.waiting.length === 0) this.states.delete(rolloutId);
          }, this.minIntervalMs).unref();
        }
      });
  }
}
