// `serve`: the device gRPC API and the artifact server on one data dir, plus the online
// TUF re-signer that keeps snapshot and timestamp from expiring.
import type * as grpc from '@grpc/grpc-js';
import type * as https from 'node:https';
import { once } from 'node:events';
import { createArtifactServer } from './artifacts-http.js';
import { initDataDir } from './data-dir.js';
import { startDeviceGrpcServer } from './device-service.js';
import { MeshError } from './errors.js';
import { formatHostPort, parseListenAddress } from './listen-address.js';
import { silentLogger, type Logger } from './log.js';

import { DEFAULT_ARTIFACT_LISTEN, DEFAULT_GRPC_LISTEN, DEFAULT_HEARTBEAT_INTERVAL_SECONDS } from './defaults.js';

export { DEFAULT_ARTIFACT_LISTEN, DEFAULT_GRPC_LISTEN, DEFAULT_HEARTBEAT_INTERVAL_SECONDS };
const RESIGN_CHECK_INTERVAL_MS = 10 * 60 * 1000;
const SHUTDOWN_GRACE_MS = 5000;
const ROOT_EXPIRY_WARNING_MS = 30 * 24 * 60 * 60 * 1000;

export interface StartServerOptions {
  dataDir: string;
  grpcListen?: string;
  artifactListen?: string;
  hostnames?: readonly string[];
  trustDomain?: string;
  heartbeatIntervalSeconds?: number;
  logger?: Logger;
  /** How often the re-signer checks expiry (default 10 minutes). */
  resignCheckIntervalMs?: number;
}

export interface RunningServer {
  /** host:port the device API listens on. */
  grpcAddress: string;
  /** https://host:port of the artifact server (TUF metadata and targets). */
  artifactsUrl: string;
  trustDomain: string;
  dataDir: string;
  /** Stops accepting calls, lets in-flight ones finish for a few seconds, then closes everything. */
  close(): Promise<void>;
}

async function shutdownGrpc(server: grpc.Server, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function shutdownHttps(server: https.Server, graceMs: number): Promise<void> {
  if (!server.listening) return;
  const closed = once(server, 'close');
  server.close();
  server.closeIdleConnections();
  const timer = setTimeout(() => server.closeAllConnections(), graceMs);
  await closed;
  clearTimeout(timer);
}

export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const logger = options.logger ?? silentLogger();
  const grpcListen = parseListenAddress(options.grpcListen ?? DEFAULT_GRPC_LISTEN, '--grpc-listen');
  const artifactListen = parseListenAddress(options.artifactListen ?? DEFAULT_ARTIFACT_LISTEN, '--artifact-listen');
  const heartbeatIntervalSeconds = options.heartbeatIntervalSeconds ?? DEFAULT_HEARTBEAT_INTERVAL_SECONDS;
  if (!Number.isInteger(heartbeatIntervalSeconds) || heartbeatIntervalSeconds < 1 || heartbeatIntervalSeconds > 86400) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `heartbeat interval must be 1-86400 seconds, got ${heartbeatIntervalSeconds}`);
  }

  const ctx = await initDataDir({
    dataDir: options.dataDir,
    ...(options.trustDomain !== undefined ? { trustDomain: options.trustDomain } : {}),
    ...(options.hostnames ? { hostnames: options.hostnames } : {}),
    logger,
  });
  logger.warn(
    { tufKeysDir: ctx.layout.tufKeysDir, caKey: ctx.layout.caKeyFile },
    'embedded default: every TUF key (root included) and the device CA key are kept online in the data dir; protect it accordingly',
  );

  const caPem = (await ctx.deviceCa()).certPem;
  const tls = { caPem, keyPem: ctx.serverTls.keyPem, certPem: ctx.serverTls.certPem };
  let grpcServer: grpc.Server | undefined;
  let artifactServer: https.Server | undefined;
  let resignTimer: NodeJS.Timeout | undefined;

  const resign = (): void => {
    try {
      const { resigned, versions } = ctx.tuf.refreshExpiring();
      if (resigned.length > 0) logger.info({ resigned, versions }, 'TUF metadata re-signed');
      const rootExpires = ctx.tuf.rootExpires();
      if (Date.parse(rootExpires) - Date.now() < ROOT_EXPIRY_WARNING_MS) {
        // Devices refuse an expired root (TUF spec 5.3.10); root rotation is not automated yet.
        logger.warn({ rootExpires }, 'TUF root metadata expires soon and must be rotated');
      }
    } catch (err) {
      logger.error({ err }, 'TUF re-signing failed');
    }
  };

  try {
    resign();
    resignTimer = setInterval(resign, options.resignCheckIntervalMs ?? RESIGN_CHECK_INTERVAL_MS);
    resignTimer.unref();

    const grpcStarted = await startDeviceGrpcServer({
      store: ctx.store,
      trustDomain: ctx.trustDomain,
      logger,
      heartbeatIntervalSeconds,
      listen: formatHostPort(grpcListen.host, grpcListen.port),
      ...tls,
    });
    grpcServer = grpcStarted.server;

    artifactServer = createArtifactServer({
      metadataDir: ctx.layout.tufMetadataDir,
      targetsDir: ctx.layout.tufTargetsDir,
      store: ctx.store,
      trustDomain: ctx.trustDomain,
      logger,
      ...tls,
    });
    const server = artifactServer;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(new MeshError('MESH_ERR_LISTEN_FAILED', `artifact server cannot listen on ${options.artifactListen ?? DEFAULT_ARTIFACT_LISTEN}: ${err.message}`, { cause: err })),
      );
      server.listen(artifactListen.port, artifactListen.host, () => {
        server.removeAllListeners('error');
        server.on('error', (err) => logger.error({ err }, 'artifact server error'));
        resolve();
      });
    });
    const address = server.address();
    const artifactPort = typeof address === 'object' && address ? address.port : artifactListen.port;

    const running: RunningServer = {
      grpcAddress: formatHostPort(grpcListen.host, grpcStarted.port),
      artifactsUrl: `https://${formatHostPort(artifactListen.host, artifactPort)}`,
      trustDomain: ctx.trustDomain,
      dataDir: ctx.layout.root,
      close: async () => {
        clearInterval(resignTimer);
        await Promise.all([shutdownGrpc(grpcStarted.server, SHUTDOWN_GRACE_MS), shutdownHttps(server, SHUTDOWN_GRACE_MS)]);
        ctx.close();
        logger.info('server stopped');
      },
    };
    logger.info(
      { grpc: running.grpcAddress, artifacts: running.artifactsUrl, trustDomain: ctx.trustDomain, dataDir: ctx.layout.root },
      'server listening',
    );
    return running;
  } catch (err) {
    clearInterval(resignTimer);
    grpcServer?.forceShutdown();
    artifactServer?.close();
    ctx.close();
    throw err;
  }
}
