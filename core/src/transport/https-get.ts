import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { DeviceTlsMaterial } from './tls.js';

export class HttpStatusError extends Error {
  constructor(
    readonly statusCode: number,
    url: string,
  ) {
    super(`GET ${url} answered HTTP ${statusCode}`);
    this.name = 'HttpStatusError';
  }
}

export interface HttpsGetOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Abort when no byte arrives for this long (a stalled peer must never hang the agent). */
  idleTimeoutMs?: number;
}

/**
 * One GET over mTLS. The device always presents its certificate: the artifact server gives
 * nothing to a client it did not enroll. Resolves with the response once its headers arrive.
 *
 * A keep-alive socket the server closes while the request is being written fails the request
 * with ECONNRESET (or EPIPE) before any answer: the server never saw it, so it is sent once
 * more on a new connection, as Node's http documentation advises for `req.reusedSocket`. An
 * idle agent between two rollouts hits this (the artifact server drops idle sockets after its
 * keep-alive timeout), and without the retry a TUF refresh failed the whole assignment.
 */
export function httpsGet(agent: https.Agent, url: string, options: HttpsGetOptions = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const attempt = (retried: boolean): void => {
      let answered = false;
      const req = https.get(url, { agent, headers: options.headers, signal: options.signal }, (res) => {
        answered = true;
        resolve(res);
      });
      req.setTimeout(options.idleTimeoutMs ?? 30_000, () => {
        req.destroy(new Error(`GET ${url} stalled: no data for ${(options.idleTimeoutMs ?? 30_000) / 1000}s`));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (!retried && !answered && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE') && !options.signal?.aborted) attempt(true);
        else reject(err);
      });
    };
    attempt(false);
  });
}

export function createDeviceHttpsAgent(tls: DeviceTlsMaterial): https.Agent {
  return new https.Agent({ ca: tls.ca, cert: tls.cert, key: tls.key, keepAlive: true, maxSockets: 4 });
}
