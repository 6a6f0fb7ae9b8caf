import type https from 'node:https';
import { Readable } from 'node:stream';
import { BaseFetcher } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { httpsGet } from '../transport/https-get.js';

/**
 * tuf-js fetches metadata through this, so the device presents its client certificate to
 * the artifact server like it does for targets. Not exported from the package: the public
 * seam is TargetSource.
 */
export class MtlsFetcher extends BaseFetcher {
  readonly #agent: https.Agent;
  readonly #timeoutMs: number;

  constructor(agent: https.Agent, timeoutMs: number) {
    super();
    this.#agent = agent;
    this.#timeoutMs = timeoutMs;
  }

  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const res = await httpsGet(this.#agent, url, { idleTimeoutMs: this.#timeoutMs });
    if (res.statusCode !== 200) {
      res.resume();
      // tuf-js reads 403/404 on N.root.json as "no newer root" (TUF spec 5.3.3), so the
      // status must arrive as DownloadHTTPError, not as a generic error.
      throw new DownloadHTTPError(`GET ${url} answered HTTP ${res.statusCode}`, res.statusCode ?? 0);
    }
    return Readable.toWeb(res);
  }
}
