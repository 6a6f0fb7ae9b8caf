// The agent's retry schedule after a failed call (register, heartbeat, status report).
//
// When a server replica restarts, every device it served fails its next call within the same
// second. Retries on a deterministic schedule (the status reporter's 500 ms doubling was one)
// then arrive in synchronized waves; retries with a floor of half the window ("equal jitter",
// the daemon's earlier schedule) leave the first half of every window empty and bunch the
// fleet into the second. Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter")
// spreads each retry uniformly over the whole window, so the arrival rate after an outage is
// flat and the server's handshake CPU, not the schedule, sets how fast the fleet comes back.
// The cap bounds how late a device can be once the server is back: a device never gives up,
// but it never sleeps longer than `capMs` between attempts.

export interface RetryBackoff {
  /** The window of the first retry; each further failure doubles it. */
  readonly baseMs: number;
  /** The largest window: no retry waits longer than this. */
  readonly capMs: number;
}

/** Register and heartbeat retries (the daemon also caps them at the heartbeat interval). */
export const CALL_RETRY_BACKOFF: RetryBackoff = Object.freeze({ baseMs: 1000, capMs: 60_000 });
/** Status report retries: reports wait behind nothing else, so they start sooner and cap lower. */
export const REPORT_RETRY_BACKOFF: RetryBackoff = Object.freeze({ baseMs: 500, capMs: 30_000 });

/** The window the delay after `failures` consecutive failures is drawn from: base·2^(failures-1), capped. */
export function retryWindowMs(failures: number, policy: RetryBackoff): number {
  const doublings = Math.min(Math.max(Math.floor(failures) - 1, 0), 52);
  return Math.min(policy.capMs, policy.baseMs * 2 ** doublings);
}

/**
 * The delay before the next attempt after `failures` (>= 1) consecutive failures: full jitter,
 * uniform in [0, retryWindowMs(failures)). `random` returns [0, 1) (tests pass their own).
 */
export function retryDelayMs(failures: number, policy: RetryBackoff, random: () => number = Math.random): number {
  return Math.floor(random() * retryWindowMs(failures, policy));
}
