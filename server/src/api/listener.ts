// The REST API on its listener: plain HTTP, or HTTPS with the operator's certificate that
// reloadTls (SIGHUP in `serve`) swaps for new connections while open ones keep theirs.
import type * as https from 'node:https';
import type { FastifyInstance } from 'fastify';
import type { MeshanicsContext } from '../config/data-dir.js';
import { formatHostPort, type ListenAddress } from '../config/listen-address.js';
import { MeshError } from '../errors.js';
import type { Logger } from '../observability/log.js';
import { buildApi, type ApiOptions } from './app.js';
import { readApiTls, type ApiTlsFiles, type ApiTlsMaterial } from './transport.js';

export interface ApiListenerOptions extends Omit<ApiOptions, 'https' | 'logger'> {
  listen: ListenAddress;
  logger: Logger;
  /** The files (re-read on reload) and what was read from them at start. */
  tls?: { files: ApiTlsFiles; material: ApiTlsMaterial };
  insecureHttp: boolean;
  /** Gets the app before it listens, so a failed listen can still be closed by the caller. */
  onApp: (app: FastifyInstance) => void;
}

export async function startApiListener(ctx: MeshanicsContext, options: ApiListenerOptions): Promise<{ url: string; reloadTls: (() => boolean) | undefined }> {
  const { listen, logger, tls, insecureHttp, onApp, ...apiOptions } = options;
  const api = buildApi(ctx, { ...apiOptions, logger, ...(tls ? { https: { cert: tls.material.cert, key: tls.material.key } } : {}) });
  onApp(api);
  try {
    await api.listen({ host: listen.host, port: listen.port });
  } catch (err) {
    throw new MeshError('MESH_ERR_LISTEN_FAILED', `REST API cannot listen on ${formatHostPort(listen.host, listen.port)}: ${(err as Error).message}`, { cause: err });
  }
  const bound = api.server.address();
  const url = `${tls ? 'https' : 'http'}://${formatHostPort(listen.host, typeof bound === 'object' && bound ? bound.port : listen.port)}`;
  if (!tls) {
    if (insecureHttp) logger.warn({ api: url }, 'the REST API serves plain HTTP (--api-insecure-http): API keys cross the network in clear unless a TLS proxy is in front');
    return { url, reloadTls: undefined };
  }
  const { subject, notAfter, fingerprint256 } = tls.material;
  logger.info({ certFile: tls.files.certFile, subject, notAfter, fingerprint256 }, 'REST API serves HTTPS');
  const server = api.server as unknown as https.Server;
  const reloadTls = (): boolean => {
    try {
      const next = readApiTls(tls.files);
      // Only new handshakes use the new context: open connections (event streams) keep theirs.
      server.setSecureContext({ cert: next.cert, key: next.key });
      logger.info({ subject: next.subject, notAfter: next.notAfter, fingerprint256: next.fingerprint256 }, 'REST API certificate reloaded');
      return true;
    } catch (err) {
      logger.error({ reason: (err as Error).message }, 'REST API certificate reload failed: still serving the previous one');
      return false;
    }
  };
  return { url, reloadTls };
}
