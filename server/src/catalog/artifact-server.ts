// The artifact server: TUF metadata and targets over HTTPS, read-only, to enrolled devices
// only. TUF protects integrity on its own; mTLS here keeps artifacts (models, configs) from
// anyone who is not an enrolled, non-decommissioned device.
import * as fs from 'node:fs';
import * as https from 'node:https';
import type * as http from 'node:http';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { TLSSocket } from 'node:tls';
import { TUF_METADATA_PREFIX, TUF_TARGETS_PREFIX } from '@meshanics/core/contract';
import type { Logger } from '../observability/log.js';
import { deviceFromCertificate } from '../pki/peer-identity.js';
import type { Store } from '../store/index.js';

export interface ArtifactServerOptions {
  metadataDir: string;
  targetsDir: string;
  store: Store;
  trustDomain: string;
  logger: Logger;
  caPem: string;
  keyPem: string;
  certPem: string;
}

class HttpRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/**
 * Maps a request path below `prefix` to a file inside `root`, or refuses. Layered on purpose:
 * only plain segments pass (no "..", no encoded "/" or "\", no NUL), the joined path must
 * stay in the root, and its real path (symlinks resolved) must too.
 */
async function resolveInside(root: string, rawRelative: string): Promise<string> {
  if (rawRelative === '' || /%2f|%5c|%00/i.test(rawRelative) || rawRelative.includes('\\')) {
    throw new HttpRefusal(404, 'not found');
  }
  const segments = rawRelative.split('/').map((s) => {
    let decoded: string;
    try {
      decoded = decodeURIComponent(s);
    } catch {
      throw new HttpRefusal(400, 'bad path encoding');
    }
    // SEGMENT starts with an alphanumeric, so "." and ".." never pass.
    if (!SEGMENT.test(decoded)) throw new HttpRefusal(404, 'not found');
    return decoded;
  });
  const realRoot = await fs.promises.realpath(root);
  const candidate = path.resolve(realRoot, ...segments);
  if (!candidate.startsWith(realRoot + path.sep)) throw new HttpRefusal(404, 'not found');
  let real: string;
  try {
    real = await fs.promises.realpath(candidate);
  } catch {
    throw new HttpRefusal(404, 'not found');
  }
  if (!real.startsWith(realRoot + path.sep)) throw new HttpRefusal(404, 'not found');
  return real;
}

/** `bytes=N-` or `bytes=N-M`; anything else (several ranges, suffix ranges) is served whole, as RFC 9110 14.2 allows. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (!Number.isSafeInteger(start) || start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

export function createArtifactRequestHandler(options: ArtifactServerOptions): http.RequestListener {
  const { logger, store, trustDomain } = options;
  const roots: [prefix: string, dir: string][] = [
    [TUF_METADATA_PREFIX, options.metadataDir],
    [TUF_TARGETS_PREFIX, options.targetsDir],
  ];

  async function serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // TLS already verified the chain; this decides whether that certificate still opens the door.
    const socket = req.socket as TLSSocket;
    const peer = deviceFromCertificate(socket.getPeerCertificate()?.raw, trustDomain);
    const device = peer && (await store.getDeviceBySpiffeId(peer.spiffeId));
    if (!device) throw new HttpRefusal(403, 'not an enrolled device');
    if (device.decommissionedAt) throw new HttpRefusal(403, 'device is decommissioned');
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpRefusal(405, 'method not allowed');

    const rawPath = (req.url ?? '').split('?')[0] ?? '';
    const match = roots.find(([prefix]) => rawPath.startsWith(prefix));
    if (!match) throw new HttpRefusal(404, 'not found');
    const file = await resolveInside(match[1], rawPath.slice(match[0].length));
    const handle = await fs.promises.open(file, 'r').catch(() => {
      throw new HttpRefusal(404, 'not found');
    });
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new HttpRefusal(404, 'not found');
      const range = parseRange(req.headers.range, stat.size);
      if (range === 'unsatisfiable') {
        res.writeHead(416, { 'Content-Range': `bytes */${stat.size}` }).end();
        return;
      }
      const headers: http.OutgoingHttpHeaders = {
        'Content-Type': match[0] === TUF_METADATA_PREFIX ? 'application/json' : 'application/octet-stream',
        'Accept-Ranges': 'bytes',
        // timestamp.json changes in place; every other file is immutable under consistent snapshots.
        'Cache-Control': path.basename(file) === 'timestamp.json' || path.basename(file) === 'root.json' ? 'no-store' : 'public, max-age=31536000, immutable',
      };
      const { start, end } = range ?? { start: 0, end: stat.size - 1 };
      if (range) headers['Content-Range'] = `bytes ${start}-${end}/${stat.size}`;
      headers['Content-Length'] = String(Math.max(0, end - start + 1));
      res.writeHead(range ? 206 : 200, headers);
      if (req.method === 'HEAD' || stat.size === 0) {
        res.end();
        return;
      }
      // 1 MiB reads: with the default 64 KiB the server spent ~2x the CPU per GiB served
      // (docs/benchmarks.md, agent pipeline), making it a co-bottleneck of every download.
      await pipeline(handle.createReadStream({ start, end, autoClose: false, highWaterMark: 1024 * 1024 }), res);
    } finally {
      await handle.close();
    }
  }

  return (req, res) => {
    serve(req, res).catch((err: unknown) => {
      const refusal = err instanceof HttpRefusal ? err : undefined;
      if (!refusal) logger.error({ err, url: req.url }, 'artifact request failed');
      else if (refusal.status === 403) logger.warn({ url: req.url, reason: refusal.message }, 'artifact request refused');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const status = refusal?.status ?? 500;
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`${refusal?.message ?? 'internal error'}\n`);
    });
  };
}

/** HTTPS with a required client certificate from the device CA: an unenrolled client completes no handshake. */
export function createArtifactServer(options: ArtifactServerOptions): https.Server {
  const server = https.createServer(
    {
      key: options.keyPem,
      cert: options.certPem,
      ca: options.caPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    },
    createArtifactRequestHandler(options),
  );
  // Refused handshakes (no or foreign client certificate) are routine noise: debug level.
  server.on('tlsClientError', (err: Error) => options.logger.debug({ err: err.message }, 'artifact server TLS handshake refused'));
  return server;
}
