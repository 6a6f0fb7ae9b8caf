// @meshanics/probe-http: an HTTP GET; a 2xx response is healthy. The host must be on the
// device's allowlist, a redirect may not leave that host, and the timeout (core aborts
// ctx.signal) covers the whole response, body included.
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { assertHttpHost, isHttpHostAllowed, type Agent, type MeshanicsPlugin, type ProbeResult } from '@meshanics/core';
import { HTTP_PROBE_SPEC_SCHEMA, PROBE_TYPE, type HttpProbeSpec } from './schema.js';

export { HTTP_PROBE_SPEC_SCHEMA, PROBE_TYPE, type HttpProbeSpec } from './schema.js';

const PLUGIN_NAME = 'HttpProbePlugin';
const MAX_REDIRECTS = 5;
/** Enough of a body to prove the response completed; more is not read. */
const MAX_BODY_BYTES = 64 * 1024;

interface Response {
  status: number;
  location: string | undefined;
}

function get(url: URL, signal: AbortSignal, ca: (string | Buffer)[] | undefined): Promise<Response> {
  return new Promise((resolve, reject) => {
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.get(url, { signal, agent: false, ...(url.protocol === 'https:' && ca ? { ca } : {}) }, (res) => {
      let read = 0;
      let truncated = false;
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > MAX_BODY_BYTES) {
          truncated = true;
          res.destroy();
        }
      });
      res.on('error', reject);
      res.on('close', () => {
        // Only a complete response (or one we cut short on purpose) counts.
        if (res.complete || truncated) resolve({ status: res.statusCode ?? 0, location: res.headers.location });
        else reject(signal.aborted ? new Error('timed out before the response completed') : new Error('response ended early'));
      });
    });
    req.on('error', reject);
  });
}

export async function probeHttp(spec: HttpProbeSpec, allowed: (host: string) => boolean, signal: AbortSignal, ca?: (string | Buffer)[]): Promise<ProbeResult> {
  let url = new URL(spec.url);
  if (!allowed(url.hostname)) {
    return { healthy: false, detail: `host "${url.hostname}" is not on the allowlist (allowlist.httpHosts)` };
  }
  for (let hop = 0; ; hop++) {
    let res: Response;
    try {
      res = await get(url, signal, ca);
    } catch (err) {
      return { healthy: false, detail: `GET ${url.href}: ${(err as Error).message}` };
    }
    if (res.status >= 200 && res.status < 300) return { healthy: true, detail: `GET ${url.href}: HTTP ${res.status}` };
    if (res.status >= 300 && res.status < 400 && res.location) {
      const next = new URL(res.location, url);
      if (next.hostname !== url.hostname || !allowed(next.hostname)) {
        return { healthy: false, detail: `GET ${url.href}: HTTP ${res.status} redirect to another host (${next.host}) refused` };
      }
      if (hop >= MAX_REDIRECTS) return { healthy: false, detail: `GET ${spec.url}: more than ${MAX_REDIRECTS} redirects` };
      url = next;
      continue;
    }
    return { healthy: false, detail: `GET ${url.href}: HTTP ${res.status}` };
  }
}

export default class HttpProbePlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  readonly name = PLUGIN_NAME;
  readonly version = '0.1.0';
  readonly provides = { probeType: PROBE_TYPE };
  readonly specSchema = HTTP_PROBE_SPEC_SCHEMA;
  readonly coreApi = '^0.1.0';

  apply(agent: Agent): void {
    // The system's CAs plus the device's own bundle, so a service with a certificate from
    // either verifies.
    const ca = agent.tls ? [...tls.rootCertificates, agent.tls.ca] : undefined;
    // At validation, before anything is downloaded or swapped; each attempt checks again.
    agent.hooks.validateProbe.for(PROBE_TYPE).tap(PLUGIN_NAME, (ctx) => {
      assertHttpHost(agent.allowlist, new URL((ctx.spec as HttpProbeSpec).url).hostname);
    });
    agent.hooks.probe.for(PROBE_TYPE).tapPromise(PLUGIN_NAME, (ctx) => probeHttp(ctx.spec as HttpProbeSpec, (host) => isHttpHostAllowed(agent.allowlist, host), ctx.signal, ca));
  }
}
