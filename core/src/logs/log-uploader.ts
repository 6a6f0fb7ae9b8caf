// Answers the operator's log requests that arrive with heartbeats: collect from the one
// allowlisted source, gzip, stream with UploadLogs. Each request is handled once per agent
// run; the server refuses a second upload for a fulfilled request anyway.
import { gzipSync } from 'node:zlib';
import type { Logger } from 'pino';
import type { LogRequestMessage } from '../contract/messages.js';
import type { DeviceClient } from '../runtime/device-client.js';
import { collectLogs, type LogSource } from './collect.js';

/** The most a bundle may hold before compression, whatever a request asks for. */
export const MAX_LOG_BYTES = 16 * 1024 * 1024;

function parseTime(value: string): number | undefined {
  if (!value) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : t;
}

export class LogUploader {
  readonly #source: LogSource;
  readonly #log: Logger;
  readonly #handled = new Set<string>();

  constructor(source: LogSource, log: Logger) {
    this.#source = source;
    this.#log = log;
  }

  /** Starts uploads for requests not seen yet; never throws (a failure is retried next run). */
  handle(requests: LogRequestMessage[], client: DeviceClient): Promise<void> {
    const fresh = requests.filter((r) => r.logRequestId && !this.#handled.has(r.logRequestId));
    return Promise.all(fresh.map((r) => this.#upload(r, client))).then(() => undefined);
  }

  async #upload(request: LogRequestMessage, client: DeviceClient): Promise<void> {
    this.#handled.add(request.logRequestId);
    const maxBytes = Math.min(Number(request.maxBytes) || MAX_LOG_BYTES, MAX_LOG_BYTES);
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
