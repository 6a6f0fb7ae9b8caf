// `serve`: the device gRPC API, the artifact server and the enrollment endpoint on one data
// dir, plus the online TUF re-signer that keeps snapshot and timestamp from expiring.
import type * as grpc from '@grpc/grpc-js';
import type * as https from 'node:https';
import type { FastifyInstance } from 'fastify';
import { once } from 'node:events';
import { createArtifactServer } from './catalog/artifact-server.js';
import { initDataDir } from './config/data-dir.js';
import { startDeviceGrpcServer, type DeviceGrpcServer } from './device-api/device-service.js';
import { ensureSessionTicketKey } from './pki/session-ticket-key.js';
import { createEnrollmentServer } from './enrollment/http.js';
import { MeshError } from './errors.js';
import { formatHostPort, parseListenAddress, type ListenAddress } from './config/listen-address.js';
import { checkApiTransport, readApiTls, type ApiTlsFiles } from './api/transport.js';
import type { AuthThrottleOptions } from './api/auth-throttle.js';
import type { EventStreamLimits } from './api/event-streams.js';
import { silentLogger, type Logger } from './observability/log.js';
import { removeStaleLogUploads } from './logs/upload.js';
import { HeartbeatCache, type HeartbeatCacheOptions } from './device-api/heartbeat-cache.js';
import { HeartbeatBatcher } from './device-api/heartbeat-batcher.js';
import type { DeviceStateFeed } from './store/index.js';
import { ServerMetrics } from './observability/metrics.js';
import { MAX_DEVICE_CERT_DAYS } from './pki/device-certificate.js';
import { publicArtifactUrl, publicGrpcAddress, resolveDeviceEndpoints } from './config/public-endpoints.js';
import { RolloutDriveQueue } from './rollouts/drive-queue.js';
import { driveRollouts } from './rollouts/engine.js';

import {
  DEFAULT_ARTIFACT_LISTEN,
  DEFAULT_DEVICE_CERT_DAYS,
  DEFAULT_ENROLL_LISTEN,
  DEFAULT_GRPC_LISTEN,
  DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
  SHUTDOWN_GRACE_MS,
} from './config/defaults.js';

export { DEFAULT_ARTIFACT_LISTEN, DEFAULT_ENROLL_LISTEN, DEFAULT_GRPC_LISTEN, DEFAULT_HEARTBEAT_INTERVAL_SECONDS };
const RESIGN_CHECK_INTERVAL_MS = 10 * 60 * 1000;
const ROLLOUT_DRIVE_INTERVAL_MS = 1000;
const ROOT_EXPIRY_WARNING_MS = 30 * 24 * 60 * 60 * 1000;

export interface StartServerOptions {
  dataDir: string;
  grpcListen?: string;
  artifactListen?: string;
  enrollListen?: string;
  /** host:port devices are told to use for the device API (default: the bound gRPC address). */
  publicGrpcAddress?: string;
  /** https://host:port devices are told to use for artifacts (default: the bound artifact URL). */
  publicArtifactUrl?: string;
  /** Validity of certificates issued by enrollment and renewal (default 30 days). */
  certValiditySeconds?: number;
  hostnames?: readonly string[];
  trustDomain?: string;
  heartbeatIntervalSeconds?: number;
  logger?: Logger;
  /** How often the re-signer checks expiry (default 10 minutes). */
  resignCheckIntervalMs?: number;
  /** How often running rollouts are driven besides after each status report (default 1 s). */
  rolloutDriveIntervalMs?: number;
  /** host:port of the operator REST API (port 0 = any). No REST API when absent. */
  apiListen?: string;
  /** Serve the REST API and the console over HTTPS with this certificate and key (re-read by reloadApiTls). */
  apiTls?: ApiTlsFiles;
  /** Allow plain HTTP on an address that is not loopback (refused otherwise); logged as a warning. */
  apiInsecureHttp?: boolean;
  /** Per-key cap, maximum lifetime and revocation check of the REST API's event streams. */
  apiEventStreams?: Partial<EventStreamLimits>;
  /** Failed API-key attempts allowed per source address and window. */
  apiAuthThrottle?: Partial<AuthThrottleOptions>;
  /** Largest artifact upload the REST API accepts, in bytes (default 8 GiB). */
  apiMaxArtifactBytes?: number;
  /** Web console directory served at `/` by the REST API (default: <repo>/console/dist if present; null: none). */
  consoleDir?: string | null;
  /**
   * PostgreSQL URL (postgres://...). Several `serve` processes on one database and one shared
   * data dir (CA, TUF keys and metadata, targets) serve one fleet. Absent: SQLite in the data dir.
   */
  databaseUrl?: string;
  /**
   * PostgreSQL: connections in each of the process's two pools, one for reads outside a
   * transaction and one for writes (default 10 each, so up to 20 per replica).
   */
  databaseConnections?: number;
  /** How long heartbeats' writes (last-seen times, changed installed sets) are batched (default 1000 ms). */
  lastSeenFlushMs?: number;
  /**
   * Heartbeat answers kept in memory while the database reports no change to them
   * (heartbeat-cache.ts; default on). false: every heartbeat reads the database.
   */
  heartbeatCache?: false | HeartbeatCacheOptions;
  /** How long shutdown waits for in-flight calls and requests before cutting them (default 5 s). */
  shutdownGraceMs?: number;
  /** Device API TLS handshakes in progress past which new connections are reset at once (default 256). */
  maxPendingHandshakes?: number;
  /** Under `serve --workers`: this process's worker slot (1..N) and how its metrics reach the primary (cluster/worker.ts). */
  worker?: { slot: number; attachMetrics(metrics: ServerMetrics): void };
}

export interface RunningServer {
  /** host:port the device API listens on. */
  grpcAddress: string;
  /** https://host:port of the artifact server (TUF metadata and targets). */
  artifactsUrl: string;
  /** https://host:port of the enrollment endpoint. */
  enrollUrl: string;
  /** http(s)://host:port of the operator REST API (undefined when not started: no apiListen). */
  apiUrl: string | undefined;
  /**
   * Re-reads the REST API certificate and key (SIGHUP): new connections get the new pair, open
   * ones (event streams) keep theirs. False (the old pair kept, the reason logged) when the
   * files are unusable or the API has no TLS.
   */
  reloadApiTls(): boolean;
  /** What enrollment tells devices to connect to. */
  publicGrpcAddress: string;
  publicArtifactUrl: string;
  trustDomain: string;
  dataDir: string;
  /**
   * Writes the heartbeats' pending batch now (last-seen times, changed installed sets), which
   * otherwise waits up to lastSeenFlushMs: for tests and tools that read the database right
   * after a heartbeat.
   */
  flushHeartbeatWrites(): Promise<void>;
  /** Stops accepting calls, lets in-flight ones finish for a few seconds, then closes everything. */
  close(): Promise<void>;
}

async function shutdownGrpc(server: Pick<grpc.Server, 'tryShutdown' | 'forceShutdown'>, graceMs: number): Promise<void> {
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

/** Binds `server`; resolves to the bound port (the OS picks one for port 0). */
async function listenHttps(server: https.Server, address: ListenAddress, what: string, logger: Logger): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new MeshError('MESH_ERR_LISTEN_FAILED', `${what} cannot listen on ${formatHostPort(address.host, address.port)}: ${err.message}`, { cause: err })),
    );
    server.listen(address.port, address.host, () => {
      server.removeAllListeners('error');
      server.on('error', (err) => logger.error({ err }, `${what} error`));
      resolve();
    });
  });
  const bound = server.address();
  return typeof bound === 'object' && bound ? bound.port : address.port;
}

function validateOptions(options: StartServerOptions): void {
  const heartbeat = options.heartbeatIntervalSeconds ?? DEFAULT_HEARTBEAT_INTERVAL_SECONDS;
  if (!Number.isInteger(heartbeat) || heartbeat < 1 || heartbeat > 86400) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `heartbeat interval must be 1-86400 seconds, got ${heartbeat}`);
  }
  const validity = options.certValiditySeconds;
  if (validity !== undefined && (!Number.isInteger(validity) || validity < 1 || validity > MAX_DEVICE_CERT_DAYS * 86400)) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `certificate validity must be 1 s to ${MAX_DEVICE_CERT_DAYS} days, got ${validity} s`);
  }
  // Fail before binding anything, not after the first device enrolls.
  if (options.publicGrpcAddress !== undefined) publicGrpcAddress(options.publicGrpcAddress);
  if (options.publicArtifactUrl !== undefined) publicArtifactUrl(options.publicArtifactUrl);
}

export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const logger = options.logger ?? silentLogger();
  const grpcListen = parseListenAddress(options.grpcListen ?? DEFAULT_GRPC_LISTEN, '--grpc-listen');
  const artifactListen = parseListenAddress(options.artifactListen ?? DEFAULT_ARTIFACT_LISTEN, '--artifact-listen');
  const enrollListen = parseListenAddress(options.enrollListen ?? DEFAULT_ENROLL_LISTEN, '--enroll-listen');
  const apiListen = options.apiListen === undefined ? undefined : parseListenAddress(options.apiListen, '--api-listen');
  validateOptions(options);
  if (apiListen) checkApiTransport(apiListen, { tls: options.apiTls !== undefined, insecureHttp: options.apiInsecureHttp === true });
  // Read before anything is bound: a wrong path fails the start, not the first operator.
  const apiTls = options.apiTls ? readApiTls(options.apiTls) : undefined;
  const heartbeatIntervalSeconds = options.heartbeatIntervalSeconds ?? DEFAULT_HEARTBEAT_INTERVAL_SECONDS;
  const certValiditySeconds = options.certValiditySeconds ?? DEFAULT_DEVICE_CERT_DAYS * 86400;

  const metrics = new ServerMetrics(options.worker ? { worker: options.worker.slot } : {});
  options.worker?.attachMetrics(metrics);
  const ctx = await initDataDir({
    dataDir: options.dataDir,
    ...(options.trustDomain !== undefined ? { trustDomain: options.trustDomain } : {}),
    ...(options.hostnames ? { hostnames: options.hostnames } : {}),
    ...(options.databaseUrl !== undefined ? { databaseUrl: options.databaseUrl } : {}),
    observeDatabase: metrics.observeDatabase,
    ...(options.databaseConnections !== undefined ? { databaseConnections: options.databaseConnections } : {}),
    logger,
  });
  metrics.attach(ctx.store);
  const graceMs = options.shutdownGraceMs ?? SHUTDOWN_GRACE_MS;
  const heartbeatWrites = new HeartbeatBatcher(ctx.store, logger, options.lastSeenFlushMs);
  let heartbeatCache: HeartbeatCache | undefined;
  let stateFeed: DeviceStateFeed | undefined;
  let accepting = true;
  // Background work in flight (re-signing, rollout driving): shutdown waits for it before
  // closing the database under it.
  const background = new Set<Promise<unknown>>();
  const track = <T>(work: Promise<T>): Promise<T> => {
    background.add(work);
    void work.finally(() => background.delete(work)).catch(() => undefined);
    return work;
  };
  // TUF spec 6.1: root and targets keys belong offline (`meshanics-server tuf`, docs/security.md).
  const custody = ctx.tuf.keyCustody();
  const onlineTopKeys = custody.online.filter((r) => r === 'root' || r === 'targets');
  if (onlineTopKeys.length > 0)
    logger.warn(
      { tufKeysDir: ctx.layout.tufKeysDir, online: custody.online },
      `embedded default: TUF ${onlineTopKeys.join(' and ')} keys are kept online in the data dir next to the online keys; anyone who reads it can sign updates (move them offline: meshanics-server tuf --help)`,
    );
  else logger.info({ tufKeysDir: ctx.layout.tufKeysDir, online: custody.online, offline: custody.offline }, 'TUF root and targets keys are offline');
  logger.warn({ caKey: ctx.layout.caKeyFile }, 'the device CA key is kept online in the data dir; protect it accordingly');

  const caPem = (await ctx.deviceCa()).certPem;
  const ticketKey = await ensureSessionTicketKey(ctx.layout.sessionTicketKeyFile, (fn) => ctx.store.withWriteLock(fn));
  if (ticketKey.created) logger.info({ file: ctx.layout.sessionTicketKeyFile }, 'TLS session ticket key created');
  const tls = { caPem, keyPem: ctx.serverTls.keyPem, certPem: ctx.serverTls.certPem, sessionTicketKey: ticketKey.key };
  let grpcServer: DeviceGrpcServer | undefined;
  const httpsServers: https.Server[] = [];
  let resignTimer: NodeJS.Timeout | undefined;
  let driveTimer: NodeJS.Timeout | undefined;
  let api: FastifyInstance | undefined;

  // Every replica runs this timer; refreshExpiring runs under the database write lock (the
  // global advisory lock on PostgreSQL) and re-reads the shared metadata inside it, so one
  // replica re-signs and the others then find nothing due.
  let resigning = false;
  const resign = async (): Promise<void> => {
    if (resigning || !accepting) return;
    resigning = true;
    try {
      const { resigned, versions, overdue } = await ctx.tuf.refreshExpiring();
      if (resigned.length > 0) logger.info({ resigned, versions }, 'TUF metadata re-signed');
      if (overdue.includes('targets')) logger.warn({ overdue }, 'TUF top-level targets is past half its lifetime and its key is offline: sign a new version (tuf sign-targets)');
      const rootExpires = ctx.tuf.rootExpires();
      if (Date.parse(rootExpires) - Date.now() < ROOT_EXPIRY_WARNING_MS) {
        // Devices refuse an expired root (TUF spec 5.3.10); root rotation is not automated yet.
        logger.warn({ rootExpires }, 'TUF root metadata expires soon and must be rotated');
      }
    } catch (err) {
      logger.error({ err }, 'TUF re-signing failed');
    } finally {
      resigning = false;
    }
  };

  try {
    await resign();
    resignTimer = setInterval(() => void track(resign()), options.resignCheckIntervalMs ?? RESIGN_CHECK_INTERVAL_MS);
    const stale = removeStaleLogUploads(ctx.layout.logsDir);
    if (stale.length > 0) logger.info({ removed: stale.length }, 'removed partial log uploads left by an earlier run');
    resignTimer.unref();

    // One progression step per rollout per drive interval at most (1 s by default), whether
    // reports or the timer below ask for it: a step glances at the rollout (a read), and one
    // that acts counts its devices in SQL under the write lock; a wave of thousands asked for
    // one per report. A wave's progression waits at most an interval longer.
    const driveIntervalMs = options.rolloutDriveIntervalMs ?? ROLLOUT_DRIVE_INTERVAL_MS;
    const rolloutSteps = new RolloutDriveQueue((rolloutId) => driveRollouts(ctx, { rolloutId }), logger, driveIntervalMs);
    if (options.heartbeatCache !== false) {
      heartbeatCache = new HeartbeatCache(options.heartbeatCache);
      stateFeed = await ctx.store.openDeviceStateFeed(heartbeatCache.changed, {
        onStatus: ({ following, error }) =>
          following
            ? logger.info('following device state changes again: heartbeat answers are cached')
            : logger.warn({ err: error }, 'lost the database notifications of device state changes: heartbeats read the database until they are back'),
      });
      heartbeatCache.follow(stateFeed);
      metrics.attachHeartbeatCache(heartbeatCache);
    }
    const grpcStarted = await startDeviceGrpcServer({
      store: ctx.store,
      trustDomain: ctx.trustDomain,
      logger,
      heartbeatIntervalSeconds,
      logsDir: ctx.layout.logsDir,
      afterRolloutReport: (rolloutId) => track(rolloutSteps.request(rolloutId)),
      heartbeatWrites,
      metrics,
      ...(heartbeatCache ? { heartbeatCache } : {}),
      listen: formatHostPort(grpcListen.host, grpcListen.port),
      ...(options.maxPendingHandshakes !== undefined ? { maxPendingHandshakes: options.maxPendingHandshakes } : {}),
      ...tls,
    });
    grpcServer = grpcStarted;
    const grpcAddress = formatHostPort(grpcListen.host, grpcStarted.port);

    const artifactServer = createArtifactServer({
      metadataDir: ctx.layout.tufMetadataDir,
      targetsDir: ctx.layout.tufTargetsDir,
      store: ctx.store,
      trustDomain: ctx.trustDomain,
      logger,
      ...tls,
    });
    httpsServers.push(artifactServer);
    const artifactsUrl = `https://${formatHostPort(artifactListen.host, await listenHttps(artifactServer, artifactListen, 'artifact server', logger))}`;

    const endpoints = resolveDeviceEndpoints(
      { grpcHost: grpcListen.host, grpcAddress, artifactHost: artifactListen.host, artifactsUrl },
      { publicGrpcAddress: options.publicGrpcAddress, publicArtifactUrl: options.publicArtifactUrl },
      logger,
    );
    const enrollServer = createEnrollmentServer({ ctx, endpoints, validity: { seconds: certValiditySeconds }, logger, ...tls });
    httpsServers.push(enrollServer);
    const enrollUrl = `https://${formatHostPort(enrollListen.host, await listenHttps(enrollServer, enrollListen, 'enrollment endpoint', logger))}`;

    // Rollouts also move without reports (a decommissioned device, another process's change).
    let driving = false;
    driveTimer = setInterval(() => {
      if (driving || !accepting) return;
      driving = true;
      void track(ctx.store.rollouts.listIds(['running']).then((ids) => Promise.all(ids.map((id) => rolloutSteps.request(id)))))
        .catch((err: unknown) => logger.error({ err }, 'rollout progression failed'))
        .finally(() => {
          driving = false;
        });
    }, driveIntervalMs);
    driveTimer.unref();

    let apiUrl: string | undefined;
    let reloadApiTls = (): boolean => (logger.warn('the REST API serves no TLS: nothing to reload'), false);
    if (apiListen) {
      const { startApiListener } = await import('./api/listener.js');
      const started = await startApiListener(ctx, {
        listen: apiListen,
        logger,
        heartbeatIntervalSeconds,
        ...(options.apiMaxArtifactBytes !== undefined ? { maxArtifactBytes: options.apiMaxArtifactBytes } : {}),
        ...(options.consoleDir !== undefined ? { consoleDir: options.consoleDir } : {}),
        ...(options.apiTls && apiTls ? { tls: { files: options.apiTls, material: apiTls } } : {}),
        insecureHttp: options.apiInsecureHttp === true,
        ...(options.apiEventStreams ? { eventStreams: options.apiEventStreams } : {}),
        ...(options.apiAuthThrottle ? { authThrottle: options.apiAuthThrottle } : {}),
        metrics,
        isAccepting: () => accepting,
        onApp: (app) => void (api = app),
      });
      apiUrl = started.url;
      if (started.reloadTls) reloadApiTls = started.reloadTls;
    }

    const running: RunningServer = {
      grpcAddress,
      artifactsUrl,
      enrollUrl,
      apiUrl,
      publicGrpcAddress: endpoints.deviceApi,
      publicArtifactUrl: endpoints.artifactServer,
      trustDomain: ctx.trustDomain,
      dataDir: ctx.layout.root,
      flushHeartbeatWrites: () => heartbeatWrites.flush(),
      reloadApiTls: () => reloadApiTls(),
      close: async () => {
        // Drain: stop accepting (readyz turns 503, listeners close), let in-flight device
        // calls and HTTP requests finish (up to the grace period), then write the last batch
        // of last-seen times, wait for background work, and close the database.
        accepting = false;
        clearInterval(resignTimer);
        clearInterval(driveTimer);
        await Promise.all([shutdownGrpc(grpcStarted, graceMs), ...httpsServers.map((s) => shutdownHttps(s, graceMs)), api?.close()]);
        await Promise.allSettled([...background]);
        await heartbeatWrites.stop();
        await stateFeed?.close();
        await ctx.close();
        logger.info('server stopped');
      },
    };
    logger.info(
      {
        grpc: running.grpcAddress,
        artifacts: running.artifactsUrl,
        enroll: running.enrollUrl,
        ...(running.apiUrl !== undefined ? { api: running.apiUrl } : {}),
        publicGrpcAddress: running.publicGrpcAddress,
        publicArtifactUrl: running.publicArtifactUrl,
        certValiditySeconds,
        trustDomain: ctx.trustDomain,
        dataDir: ctx.layout.root,
      },
      'server listening',
    );
    return running;
  } catch (err) {
    clearInterval(resignTimer);
    clearInterval(driveTimer);
    grpcServer?.forceShutdown();
    for (const s of httpsServers) s.close();
    await api?.close().catch(() => undefined);
    await Promise.allSettled([...background]);
    await heartbeatWrites.stop().catch(() => undefined);
    await stateFeed?.close().catch(() => undefined);
    await ctx.close();
    throw err;
  }
}
