// Failed API-key attempts, counted per source address (issue 25): past `maxFailures` within
// `windowMs`, every keyed request from that address is answered 429 with Retry-After until the
// oldest failure leaves the window. All keyed requests, not only wrong ones: otherwise a
// guesser would still learn from the one answer that is not a 429. Per process; behind a load
// balancer each replica counts its own share (docs/security.md).
import { DEFAULT_API_AUTH_MAX_FAILURES } from '../config/defaults.js';

export interface AuthThrottleOptions {
  /** Failures allowed per address within the window (default 10). */
  maxFailures: number;
  /** The window, in ms (default one minute). */
  windowMs: number;
}

export const DEFAULT_AUTH_THROTTLE: AuthThrottleOptions = { maxFailures: DEFAULT_API_AUTH_MAX_FAILURES, windowMs: 60_000 };
/** Addresses remembered at most; the stalest go first (a flood from many addresses stays bounded). */
const MAX_ADDRESSES = 10_000;

export class AuthFailureThrottle {
  readonly #failures = new Map<string, number[]>();
  readonly #options: AuthThrottleOptions;

  constructor(options: Partial<AuthThrottleOptions> = {}) {
    this.#options = { ...DEFAULT_AUTH_THROTTLE, ...options };
  }

  /** Seconds `address` must wait before its next keyed request, or 0. */
  retryAfterSeconds(address: string, now = Date.now()): number {
    const times = this.#recent(address, now);
    if (times.length < this.#options.maxFailures) return 0;
    return Math.max(1, Math.ceil((times[times.length - this.#options.maxFailures]! + this.#options.windowMs - now) / 1000));
  }

  fail(address: string, now = Date.now()): void {
    const times = this.#recent(address, now);
    times.push(now);
    // Re-inserted so the map's order is by last failure: the stalest address is the first key.
    this.#failures.delete(address);
    this.#failures.set(address, times);
    if (this.#failures.size > MAX_ADDRESSES) this.#failures.delete(this.#failures.keys().next().value!);
  }

  #recent(address: string, now: number): number[] {
    const times = this.#failures.get(address);
    if (!times) return [];
    const fresh = times.filter((t) => t > now - this.#options.windowMs).slice(-this.#options.maxFailures);
    if (fresh.length === 0) this.#failures.delete(address);
    else this.#failures.set(address, fresh);
    return fresh;
  }
}
