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
 */
export function httpsGet(agent: https.Agent, url: string, options: HttpsGetOptions = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent, headers: options.headers, signal: options.signal }, (res) => resolve(res));
    req.setTimeout(options.idleTimeoutMs ?? 30_000, () => {
      req.destroy(new Error(`GET ${url} stalled: no data for ${(options.idleTimeoutMs ?? 30_000) / 1000}s`));
    });
    req.on('error', reject);
  });
}

export function createDeviceHttpsAgent(tls: DeviceTlsMaterial): https.Agent {
  return new https.Agent({ ca: tls.ca, cert: tls.cert, key: tls.key, keepAlive: true, maxSockets: 4 });
}
