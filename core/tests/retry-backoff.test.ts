// The agent's retry schedule (core/src/runtime/retry-backoff.ts): its bounds, and that a fleet
// failing at the same instant retries spread over the whole window, not in a wave.
import { describe, expect, it } from 'vitest';
import { CALL_RETRY_BACKOFF, REPORT_RETRY_BACKOFF, retryDelayMs, retryWindowMs } from '../src/runtime/retry-backoff.js';

describe('retry backoff schedule', () => {
  it('doubles the window from the base on every failure and never passes the cap', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((f) => retryWindowMs(f, CALL_RETRY_BACKOFF))).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000]);
    expect(retryWindowMs(1000, CALL_RETRY_BACKOFF)).toBe(60_000);
    expect(retryWindowMs(Number.MAX_SAFE_INTEGER, REPORT_RETRY_BACKOFF)).toBe(30_000);
    // A nonsensical failure count (0, negative) still gets the first window, never 0 or NaN.
    expect(retryWindowMs(0, CALL_RETRY_BACKOFF)).toBe(1000);
    expect(retryWindowMs(-3, CALL_RETRY_BACKOFF)).toBe(1000);
  });

  it('draws every delay from [0, window): the extremes of the random source land on the bounds', () => {
    for (let failures = 1; failures <= 12; failures++) {
      const window = retryWindowMs(failures, CALL_RETRY_BACKOFF);
      expect(retryDelayMs(failures, CALL_RETRY_BACKOFF, () => 0)).toBe(0);
      expect(retryDelayMs(failures, CALL_RETRY_BACKOFF, () => 0.999_999_9)).toBe(window - 1);
      for (let i = 0; i < 200; i++) {
        const d = retryDelayMs(failures, CALL_RETRY_BACKOFF);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(window);
      }
    }
  });

  it('spreads 10,000 devices that failed at once evenly over the window (no synchronized wave)', () => {
    const failures = 6; // window 32 s
    const window = retryWindowMs(failures, CALL_RETRY_BACKOFF);
    const bins = new Array<number>(16).fill(0);
    const n = 10_000;
    for (let i = 0; i < n; i++) bins[Math.floor((retryDelayMs(failures, CALL_RETRY_BACKOFF) / window) * bins.length)]! += 1;
    // Uniform: each 2 s slice holds n/16 = 625 retries; a wave (or equal jitter's empty first
    // half) puts thousands in some slices and none in others. 625 ± 150 is > 6 sigma.
    for (const count of bins) expect(Math.abs(count - n / bins.length)).toBeLessThan(150);
    // And the retries of the fleet are not bunched in time: the busiest 100 ms holds < 2 % of it.
    const per100ms = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const slot = Math.floor(retryDelayMs(failures, CALL_RETRY_BACKOFF) / 100);
      per100ms.set(slot, (per100ms.get(slot) ?? 0) + 1);
    }
    expect(Math.max(...per100ms.values())).toBeLessThan(n * 0.02);
  });
});
