import type { Logger } from 'pino';
import type { Assignment } from './assignment.js';
import type { AgentHooks } from './hooks.js';
import type { ProbeResult } from './plugin.js';
import { abortableSleep } from './kit/sleep.js';

export interface ProbeOutcome {
  healthy: boolean;
  /** One entry per attempt: "attempt 2/3: connection refused". */
  attempts: string[];
}

/** Seconds between attempts: spaced out, growing, never longer than 30 s. */
export function attemptSpacingSeconds(attempt: number): number {
  return Math.min(2 ** (attempt - 1), 30);
}

/**
 * Runs the probe contract: initial delay, then up to `attempts` attempts, each bounded by the
 * timeout (its signal is aborted then, and a late answer is ignored). Healthy on the first
 * healthy attempt; unhealthy only when every attempt failed.
 */
export async function runProbe(hooks: AgentHooks, assignment: Assignment, spec: unknown, log: Logger, signal: AbortSignal): Promise<ProbeOutcome> {
  const { type, attempts, timeoutSeconds, initialDelaySeconds } = assignment.probe;
  const outcomes: string[] = [];
  await abortableSleep(initialDelaySeconds * 1000, signal);
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) await abortableSleep(attemptSpacingSeconds(attempt - 1) * 1000, signal);
    const timeoutMs = timeoutSeconds * 1000;
    const controller = new AbortController();
    const onParentAbort = () => controller.abort(signal.reason);
    signal.addEventListener('abort', onParentAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    let result: ProbeResult | undefined;
    try {
      const timedOut = new Promise<ProbeResult>((resolve) => {
        timer = setTimeout(() => {
          controller.abort(new Error('probe timeout'));
          resolve({ healthy: false, detail: `timed out after ${timeoutSeconds}s` });
        }, timeoutMs);
      });
      const attemptPromise = hooks.probe
        .for(type)
        .promise({ assignment, spec, attempt, attempts, timeoutMs, signal: controller.signal, log })
        .then(
          (r) => r ?? { healthy: false, detail: `no plugin answered for probe type "${type}"` },
          (err: unknown) => ({ healthy: false, detail: `probe error: ${(err as Error).message ?? String(err)}` }),
        );
      result = await Promise.race([attemptPromise, timedOut]);
    } finally {
      clearTimeout(timer);
      controller.abort(new Error('probe attempt finished'));
      signal.removeEventListener('abort', onParentAbort);
    }
    outcomes.push(`attempt ${attempt}/${attempts}: ${result.healthy ? 'healthy' : 'unhealthy'}: ${result.detail}`);
    log.info({ probe: type, attempt, attempts, healthy: result.healthy, detail: result.detail }, 'probe attempt');
    if (result.healthy) return { healthy: true, attempts: outcomes };
    if (signal.aborted) break;
  }
  return { healthy: false, attempts: outcomes };
}
