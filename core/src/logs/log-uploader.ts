// Answers the operator's log requests that arrive with heartbeats: collect from the one
// allowlisted source, gzip, stream with UploadLogs. Each request is handled once per agent
// run; the server refuses a second upload for a fulfilled request anyway. The server does not
// get to decide how much work that is: at most MAX_LOG_REQUESTS_PER_HEARTBEAT requests are
// taken from one heartbeat (the rest come again with the next), they are collected and sent
// one at a time, and each within the byte budget (MAX_LOG_BYTES at most).
import { gzipSync } from 'node:zlib';
import type { Logger } from 'pino';
import type { LogRequestMessage } from '../contract/messages.js';
import type { DeviceClient } from '../runtime/device-client.js';
import { collectLogs, type LogSource } from './collect.js';

/** The most a bundle may hold before compression, whatever a request asks for. */
export const MAX_LOG_BYTES = 16 * 1024 * 1024;
/** Log requests taken from one heartbeat answer; a normal server has one pending at a time. */
export const MAX_LOG_REQUESTS_PER_HEARTBEAT = 4;

function parseTime(value: string): number | undefined {
  if (!value) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : t;
}

export class LogUploader {
  readonly #source: LogSource;
  readonly #log: Logger;
  readonly #handled = new Set<string>();
  /** The uploads queued so far, one after the other. */
  #queue: Promise<void> = Promise.resolve();
  #pending = 0;

  constructor(source: LogSource, log: Logger) {
    this.#source = source;
    this.#log = log;
  }

  /**
   * Queues uploads for requests not seen yet (at most MAX_LOG_REQUESTS_PER_HEARTBEAT queued at
   * any time), behind the ones already queued; resolves when they are done. Never throws (a failure is
   * retried with a later heartbeat).
   */
  handle(requests: LogRequestMessage[], client: DeviceClient): Promise<void> {
    const fresh: LogRequestMessage[] = [];
    // Queued but not done count against the cap: a server that sends new requests faster than
    // they upload does not grow the queue.
    const room = MAX_LOG_REQUESTS_PER_HEARTBEAT - this.#pending;
    for (const r of requests) {
      if (fresh.length >= room) break;
      if (!r.logRequestId || this.#handled.has(r.logRequestId) || fresh.some((f) => f.logRequestId === r.logRequestId)) continue;
      fresh.push(r);
    }
    if (requests.length > fresh.length) {
      this.#log.debug({ offered: requests.length, taken: fresh.length }, 'log requests beyond the per-heartbeat cap or already handled');
    }
    // Marked before they run, so the next heartbeat does not queue them a second time.
    for (const r of fresh) this.#handled.add(r.logRequestId);
    this.#pending += fresh.length;
    for (const r of fresh) {
      this.#queue = this.#queue
        .then(() => this.#upload(r, client))
        .finally(() => {
          this.#pending -= 1;
        });
    }
    return this.#queue;
  }

  async #upload(request: LogRequestMessage, client: DeviceClient): Promise<void> {
    const asked = Number(request.maxBytes);
    const maxBytes = Number.isFinite(asked) && asked > 0 ? Math.min(asked, MAX_LOG_BYTES) : MAX_LOG_BYTES;
    try {
      const raw = await collectLogs(this.#source, { since: parseTime(request.since), until: parseTime(request.until), maxBytes });
      const gz = gzipSync(raw);
      const received = await client.uploadLogs(request.logRequestId, gz);
      this.#log.info({ logRequestId: request.logRequestId, bytes: raw.length, gzipBytes: gz.length, received }, 'log bundle uploaded');
    } catch (err) {
      // Let the next heartbeat try again.
      this.#handled.delete(request.logRequestId);
      this.#log.warn({ logRequestId: request.logRequestId, err: (err as Error).message }, 'log upload failed');
    }
  }
}
