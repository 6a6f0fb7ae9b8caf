// Following a rollout until it ends: its server-sent events (GET /rollouts/ID/events), with
// reconnects, and polling when no event stream can be had; the exit code its end maps to.
// It follows the summary (no device list: a rollout of 36,000 devices is 9 MB as a detail,
// docs/operator-api.md "Large rollouts") and reads the whole detail once, at the end.
import type { Rollout, RolloutSummary } from '../api-types.js';
import type { ShownRollout } from './rollout-view.js';
import { type ApiClient, seg } from '../client.js';
import { ApiError, CliError, EXIT } from '../errors.js';

/** Parses a text/event-stream body into events. */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; data: string }> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, '\n');
    let at: number;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      let event = 'message';
      const data: string[] = [];
      for (const l of block.split('\n')) {
        if (l.startsWith(':')) continue;
        const colon = l.indexOf(':');
        const field = colon < 0 ? l : l.slice(0, colon);
        const value = colon < 0 ? '' : l.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length) yield { event, data: data.join('\n') };
    }
  }
}

export type WatchEnd = 'completed' | 'halted' | 'aborted' | 'waiting_approval';

function finished(r: RolloutSummary, stopAtApproval: boolean): boolean {
  return r.status === 'completed' || r.status === 'halted' || r.status === 'aborted' || (stopAtApproval && r.status === 'waiting_approval');
}

/**
 * Follows a rollout through its server-sent events (reconnecting when the stream drops, and
 * polling every 2 s when the stream cannot be had) until it completes, halts or is aborted.
 */
export async function watchRollout(
  api: ApiClient,
  id: string,
  options: { timeoutMs?: number; stopAtApproval?: boolean; onUpdate?: (r: RolloutSummary) => void; onRetry?: (err: Error) => void },
): Promise<ShownRollout> {
  const deadline = options.timeoutMs ? Date.now() + options.timeoutMs : Infinity;
  const stop = options.stopAtApproval === true;
  let last: RolloutSummary | undefined;
  const seen = (r: RolloutSummary) => {
    if (last && last.updatedAt === r.updatedAt && JSON.stringify(last) === JSON.stringify(r)) return;
    last = r;
    options.onUpdate?.(r);
  };
  const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
  let sse = true;
  while (Date.now() < deadline) {
    const remaining = deadline - Date.now();
    if (sse) {
      const abort = new AbortController();
      const timer = Number.isFinite(remaining) ? setTimeout(() => abort.abort(), remaining) : undefined;
      let result: RolloutSummary | undefined;
      try {
        const res = await api.raw('GET', `/rollouts${seg(id)}/events?view=summary`, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
        if (!res.body || !(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
          sse = false;
          continue;
        }
        for await (const ev of sseEvents(res.body)) {
          if (ev.event !== 'rollout') continue;
          const r = JSON.parse(ev.data) as RolloutSummary;
          seen(r);
          if (finished(r, stop)) {
            // Leaving the loop cancels the stream; only then abort (an abort first would
            // surface as an error out of the loop).
            result = r;
            break;
          }
        }
      } catch (err) {
        if (err instanceof ApiError && err.status !== 404 && err.status < 500) throw err;
        if (err instanceof ApiError && err.status === 404) {
          // No such rollout, or no event route: polling tells which.
          sse = false;
        } else if ((err as Error).name !== 'AbortError') {
          options.onRetry?.(err as Error);
        }
      } finally {
        if (timer) clearTimeout(timer);
        abort.abort();
      }
      if (result) return withDevices(api, result);
      if (Date.now() >= deadline) break;
      await sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
      continue;
    }
    const r = await api.get<RolloutSummary>(`/rollouts${seg(id)}/summary`);
    seen(r);
    if (finished(r, stop)) return withDevices(api, r);
    await sleep(Math.min(2000, Math.max(0, deadline - Date.now())));
  }
  throw new CliError(`rollout ${id} did not finish within the timeout (last status: ${last?.status ?? 'unknown'})`, EXIT.ERROR);
}

/**
 * The detail of the rollout whose summary `end` ended the watch, for the final rendering. The
 * status stays the one that ended it (the exit code depends on it): if the rollout moved on
 * meanwhile (resumed after a halt, say), or the detail cannot be read, it is `end` itself,
 * without the device list.
 */
async function withDevices(api: ApiClient, end: RolloutSummary): Promise<ShownRollout> {
  try {
    const detail = await api.get<Rollout>(`/rollouts${seg(end.id)}`);
    return detail.status === end.status ? detail : end;
  } catch {
    return end;
  }
}

export function exitCodeForRollout(r: RolloutSummary): number {
  if (r.status === 'halted') return EXIT.ROLLOUT_HALTED;
  if (r.status === 'aborted') return EXIT.ROLLOUT_ABORTED;
  return EXIT.OK;
}
