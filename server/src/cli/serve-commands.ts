// serve and init: the long-running server and the data dir it runs on.
import * as os from 'node:os';
import {
  DEFAULT_API_AUTH_MAX_FAILURES,
  DEFAULT_API_LISTEN,
  DEFAULT_API_MAX_STREAMS_PER_KEY,
  DEFAULT_API_STREAM_LIFETIME_SECONDS,
  DEFAULT_ARTIFACT_LISTEN,
  DEFAULT_DEVICE_CERT_DAYS,
  DEFAULT_ENROLL_LISTEN,
  DEFAULT_GRPC_LISTEN,
  DEFAULT_HEARTBEAT_CACHE_SIZE,
  DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
  DEFAULT_MAX_PENDING_HANDSHAKES,
  DEFAULT_DATABASE_CONNECTIONS,
  DEFAULT_TRUST_DOMAIN,
  SHUTDOWN_GRACE_MS,
  DEFAULT_WORKER_START_TIMEOUT_SECONDS,
} from '../config/defaults.js';
import cluster from 'node:cluster';
import type { StartServerOptions } from '../server.js';
import { cpuQuotaCores } from '../cluster/cpu-quota.js';
import { announceListening, joinCluster, leaveCluster, waitForWorkerShutdown, workerMetrics, workerSlot } from '../cluster/worker.js';
import type { Logger } from '../observability/log.js';
import {
  createLogger,
  dataDir,
  durationOpt,
  env,
  hostnames,
  intOpt,
  logLevel,
  print,
  stringOpt,
  UsageError,
  waitForShutdownSignal,
  databaseUrl,
  type Command,
  type Values,
} from './args.js';

/** A size flag: plain bytes, or a number with K, M, G or T (binary multiples, an optional "iB"/"B"). */
function byteSizeOpt(values: Values, flag: string, command: Command, envName: string): number | undefined {
  const raw = stringOpt(values, flag, envName);
  if (raw === undefined) return undefined;
  const m = /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(raw.trim());
  const bytes = m ? Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new UsageError(`--${flag} must be a size like 512M or 8G, got "${raw}"`, command.name);
  return bytes;
}

/** The operator REST API's transport flags, checked before anything starts (exit 2 when refused). */
async function apiTransport(values: Values, command: Command, apiListen: string | undefined) {
  const certFile = stringOpt(values, 'api-tls-cert', 'MESHANICS_API_TLS_CERT');
  const keyFile = stringOpt(values, 'api-tls-key', 'MESHANICS_API_TLS_KEY');
  if ((certFile === undefined) !== (keyFile === undefined)) throw new UsageError('give both --api-tls-cert and --api-tls-key, or neither', command.name);
  const insecure = values['api-insecure-http'] === true || ['1', 'true'].includes(env('MESHANICS_API_INSECURE_HTTP') ?? '');
  if (apiListen !== undefined) {
    const [{ checkApiTransport }, { parseListenAddress }] = await Promise.all([import('../api/transport.js'), import('../config/listen-address.js')]);
    try {
      checkApiTransport(parseListenAddress(apiListen, '--api-listen'), { tls: certFile !== undefined, insecureHttp: insecure });
    } catch (err) {
      throw new UsageError((err as Error).message, command.name);
    }
  }
  return { ...(certFile !== undefined && keyFile !== undefined ? { apiTls: { certFile, keyFile } } : {}), apiInsecureHttp: insecure };
}

/** --cert-validity (any duration) or --cert-validity-days; never both, they would disagree. */
function certValiditySeconds(values: Values, command: Command): number | undefined {
  const precise = durationOpt(values, 'cert-validity', command, 'MESHANICS_CERT_VALIDITY');
  const daysRaw = stringOpt(values, 'cert-validity-days', 'MESHANICS_CERT_VALIDITY_DAYS');
  if (precise !== undefined && daysRaw !== undefined) {
    throw new UsageError('give --cert-validity or --cert-validity-days, not both', command.name);
  }
  if (daysRaw === undefined) return precise;
  return intOpt(values, 'cert-validity-days', command, DEFAULT_DEVICE_CERT_DAYS, 'MESHANICS_CERT_VALIDITY_DAYS') * 86_400;
}

/** More than this is a typo, not a machine (each worker holds its own database pools). */
const MAX_WORKERS = 64;
/** A start that has not listened in a day is not starting. */
const MAX_WORKER_START_TIMEOUT_SECONDS = 86_400;
/** A worker's drain beyond the grace period: closing the database, flushing the last batch. */
const WORKER_STOP_MARGIN_MS = 10_000;

/** --workers N or auto (one per core the process may use). */
function workersOpt(values: Values, command: Command): number {
  const raw = stringOpt(values, 'workers', 'MESHANICS_WORKERS');
  if (raw === undefined) return 1;
  // auto on a host of more than MAX_WORKERS cores takes MAX_WORKERS; a number beyond it is refused.
  if (raw.trim() === 'auto') return Math.min(os.availableParallelism(), cpuQuotaCores(), MAX_WORKERS);
  const n = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS) throw new UsageError(`--workers must be 1-${MAX_WORKERS} or auto, got "${raw}"`, command.name);
  return n;
}

/** Every flag of `serve` but the logger, checked before anything starts (exit 2 when refused). */
async function serveOptions(values: Values, command: Command): Promise<Omit<StartServerOptions, 'logger'>> {
  const database = databaseUrl(values);
  const trustDomain = stringOpt(values, 'trust-domain', 'MESHANICS_TRUST_DOMAIN');
  const cacheSize = intOpt(values, 'heartbeat-cache-size', command, DEFAULT_HEARTBEAT_CACHE_SIZE, 'MESHANICS_HEARTBEAT_CACHE_SIZE');
  if (cacheSize < 0) throw new UsageError(`--heartbeat-cache-size must be 0 or more, got ${cacheSize}`, command.name);
  const apiListen = stringOpt(values, 'api-listen', 'MESHANICS_API_LISTEN');
  const transport = await apiTransport(values, command, apiListen);
  const maxStreams = intOpt(values, 'api-max-streams-per-key', command, DEFAULT_API_MAX_STREAMS_PER_KEY, 'MESHANICS_API_MAX_STREAMS_PER_KEY');
  if (maxStreams < 1) throw new UsageError(`--api-max-streams-per-key must be 1 or more, got ${maxStreams}`, command.name);
  const authFailures = intOpt(values, 'api-auth-max-failures', command, DEFAULT_API_AUTH_MAX_FAILURES, 'MESHANICS_API_AUTH_MAX_FAILURES');
  if (authFailures < 1) throw new UsageError(`--api-auth-max-failures must be 1 or more, got ${authFailures}`, command.name);
  const streamLifetime = durationOpt(values, 'api-stream-lifetime', command, 'MESHANICS_API_STREAM_LIFETIME');
  if (streamLifetime !== undefined && streamLifetime < 1) throw new UsageError('--api-stream-lifetime must be at least 1s', command.name);
  const maxPendingHandshakes = intOpt(values, 'max-pending-handshakes', command, DEFAULT_MAX_PENDING_HANDSHAKES, 'MESHANICS_MAX_PENDING_HANDSHAKES');
  if (maxPendingHandshakes < 1) throw new UsageError(`--max-pending-handshakes must be 1 or more, got ${maxPendingHandshakes}`, command.name);
  const databaseConnections = intOpt(values, 'database-connections', command, DEFAULT_DATABASE_CONNECTIONS, 'MESHANICS_DATABASE_CONNECTIONS');
  if (databaseConnections < 1) throw new UsageError(`--database-connections must be 1 or more, got ${databaseConnections}`, command.name);
  return {
    dataDir: dataDir(values),
    grpcListen: stringOpt(values, 'grpc-listen', 'MESHANICS_GRPC_LISTEN') ?? DEFAULT_GRPC_LISTEN,
    artifactListen: stringOpt(values, 'artifact-listen', 'MESHANICS_ARTIFACT_LISTEN') ?? DEFAULT_ARTIFACT_LISTEN,
    hostnames: hostnames(values),
    ...(trustDomain !== undefined ? { trustDomain } : {}),
    heartbeatIntervalSeconds: intOpt(values, 'heartbeat-interval', command, DEFAULT_HEARTBEAT_INTERVAL_SECONDS, 'MESHANICS_HEARTBEAT_INTERVAL'),
    enrollListen: stringOpt(values, 'enroll-listen', 'MESHANICS_ENROLL_LISTEN') ?? DEFAULT_ENROLL_LISTEN,
    publicGrpcAddress: stringOpt(values, 'public-grpc-address', 'MESHANICS_PUBLIC_GRPC_ADDRESS'),
    publicArtifactUrl: stringOpt(values, 'public-artifact-url', 'MESHANICS_PUBLIC_ARTIFACT_URL'),
    certValiditySeconds: certValiditySeconds(values, command),
    apiListen,
    ...transport,
    apiAuthThrottle: { maxFailures: authFailures },
    apiEventStreams: { maxPerKey: maxStreams, ...(streamLifetime !== undefined ? { maxLifetimeMs: streamLifetime * 1000 } : {}) },
    apiMaxArtifactBytes: byteSizeOpt(values, 'api-max-upload', command, 'MESHANICS_API_MAX_UPLOAD'),
    ...(database !== undefined ? { databaseUrl: database } : {}),
    heartbeatCache: cacheSize === 0 ? false : { maxEntries: cacheSize },
    maxPendingHandshakes,
    databaseConnections,
  };
}

/** What SIGHUP reloads, filled in once the server runs (the handler is installed long before). */
interface Hangup {
  logger?: Logger;
  reloadApiTls?: () => boolean;
}

function onHangup(hangup: Hangup): () => void {
  return () => {
    hangup.logger?.info({ signal: 'SIGHUP' }, 'reloading the REST API certificate');
    hangup.reloadApiTls?.();
  };
}

/** One worker of `serve --workers`: the whole server, told to the primary when it listens, stopped at its request. */
async function serveAsWorker(slot: number, options: Omit<StartServerOptions, 'logger'>, logger: Logger, hangup: Hangup): Promise<void> {
  const { startServer } = await import('../server.js');
  try {
    const server = await startServer({ ...options, logger, worker: workerMetrics(slot) });
    hangup.reloadApiTls = () => server.reloadApiTls();
    announceListening({ grpc: server.grpcAddress, artifacts: server.artifactsUrl, enroll: server.enrollUrl, ...(server.apiUrl ? { api: server.apiUrl } : {}) });
    await waitForWorkerShutdown(logger);
    await server.close();
  } finally {
    logger.flush();
    leaveCluster();
  }
}

export const SERVE_COMMANDS: Command[] = [
  {
    name: 'serve',
    summary: 'run the device gRPC API, the artifact server and the enrollment endpoint (initializes the data dir on first start)',
    usage: 'serve [options]',
    options: {
      'grpc-listen': { type: 'string' },
      'artifact-listen': { type: 'string' },
      hostname: { type: 'string', multiple: true },
      'trust-domain': { type: 'string' },
      'heartbeat-interval': { type: 'string' },
      'enroll-listen': { type: 'string' },
      'public-grpc-address': { type: 'string' },
      'public-artifact-url': { type: 'string' },
      'cert-validity-days': { type: 'string' },
      'cert-validity': { type: 'string' },
      'api-listen': { type: 'string' },
      'api-max-upload': { type: 'string' },
      'api-tls-cert': { type: 'string' },
      'api-tls-key': { type: 'string' },
      'api-insecure-http': { type: 'boolean' },
      'api-max-streams-per-key': { type: 'string' },
      'api-stream-lifetime': { type: 'string' },
      'api-auth-max-failures': { type: 'string' },
      'heartbeat-cache-size': { type: 'string' },
      'max-pending-handshakes': { type: 'string' },
      'database-connections': { type: 'string' },
      workers: { type: 'string' },
      'worker-start-timeout': { type: 'string' },
    },
    help: [
      `  --grpc-listen HOST:PORT      device API address (env MESHANICS_GRPC_LISTEN, default ${DEFAULT_GRPC_LISTEN}; port 0 = any)`,
      `  --artifact-listen HOST:PORT  artifact server address (env MESHANICS_ARTIFACT_LISTEN, default ${DEFAULT_ARTIFACT_LISTEN})`,
      '  --hostname NAME              extra DNS name or IP for the server certificate, repeatable (env MESHANICS_HOSTNAMES, comma-separated)',
      `  --trust-domain DOMAIN        SPIFFE trust domain, fixed at first start (env MESHANICS_TRUST_DOMAIN, default ${DEFAULT_TRUST_DOMAIN})`,
      `  --heartbeat-interval SECS    heartbeat interval told to devices (env MESHANICS_HEARTBEAT_INTERVAL, default ${DEFAULT_HEARTBEAT_INTERVAL_SECONDS})`,
      `  --enroll-listen HOST:PORT    enrollment endpoint address (env MESHANICS_ENROLL_LISTEN, default ${DEFAULT_ENROLL_LISTEN})`,
      '  --public-grpc-address HOST:PORT   device API address told to enrolled devices (env MESHANICS_PUBLIC_GRPC_ADDRESS, default: the bound one)',
      '  --public-artifact-url URL         https://HOST:PORT of the artifact server told to devices (env MESHANICS_PUBLIC_ARTIFACT_URL, default: the bound one)',
      `  --cert-validity-days N       validity of enrolled and renewed device certificates (env MESHANICS_CERT_VALIDITY_DAYS, default ${DEFAULT_DEVICE_CERT_DAYS})`,
      '  --cert-validity DURATION     the same with seconds precision, e.g. 90s, 30m, 12h (env MESHANICS_CERT_VALIDITY; for tests)',
      `  --api-listen HOST:PORT       operator REST API and console (env MESHANICS_API_LISTEN, e.g. ${DEFAULT_API_LISTEN}; off unless given; port 0 = any)`,
      '  --api-tls-cert FILE          serve the REST API and console over HTTPS: certificate (then intermediates), PEM (env MESHANICS_API_TLS_CERT);',
      '                               re-read with the key on SIGHUP (new connections get it, open ones keep theirs)',
      '  --api-tls-key FILE           the private key of --api-tls-cert, PEM (env MESHANICS_API_TLS_KEY)',
      '  --api-insecure-http          allow plain HTTP on an address that is not loopback, e.g. behind a TLS proxy',
      '                               (env MESHANICS_API_INSECURE_HTTP=1; refused with exit 2 otherwise; warned at every start)',
      '  --api-max-upload SIZE        largest artifact upload, bytes or with K/M/G/T (env MESHANICS_API_MAX_UPLOAD, default 8G)',
      `  --api-max-streams-per-key N  open event streams one API key may hold (env MESHANICS_API_MAX_STREAMS_PER_KEY, default ${DEFAULT_API_MAX_STREAMS_PER_KEY})`,
      `  --api-stream-lifetime DURATION  an event stream ends after this long; clients reconnect (env MESHANICS_API_STREAM_LIFETIME, default ${DEFAULT_API_STREAM_LIFETIME_SECONDS / 60}m)`,
      '  --api-auth-max-failures N    failed API key attempts per source address and minute before it is answered 429',
      `                               (env MESHANICS_API_AUTH_MAX_FAILURES, default ${DEFAULT_API_AUTH_MAX_FAILURES})`,
      `  --heartbeat-cache-size N     heartbeat answers kept in memory while the database reports no change to them`,
      `                               (env MESHANICS_HEARTBEAT_CACHE_SIZE, default ${DEFAULT_HEARTBEAT_CACHE_SIZE}; 0 = read the database on every heartbeat)`,
      `  --max-pending-handshakes N   device TLS handshakes in progress past which new connections are reset at once`,
      `                               (env MESHANICS_MAX_PENDING_HANDSHAKES, default ${DEFAULT_MAX_PENDING_HANDSHAKES}; sheds a reconnect storm)`,
      `  --database-connections N     PostgreSQL: connections in each of the two pools, reads and writes, so up to 2N`,
      `                               per replica (env MESHANICS_DATABASE_CONNECTIONS, default ${DEFAULT_DATABASE_CONNECTIONS})`,
      '  --workers N|auto             processes sharing the listening ports, each the whole server (env MESHANICS_WORKERS,',
      `                               default 1; auto = one per core the CPU affinity and quota allow; at most ${MAX_WORKERS}): more cores, N times the open`,
      '                               descriptors one process may hold; each worker has its own database pools and limits',
      `  --worker-start-timeout DURATION  a worker not listening this long after it started is killed: at the first start the`,
      `                               server stops (exit 1), later it counts as a crash (env MESHANICS_WORKER_START_TIMEOUT, default ${DEFAULT_WORKER_START_TIMEOUT_SECONDS}s)`,
    ],
    async run(values, _positionals, command) {
      // Before anything is awaited, so no signal finds its default action (exit) in place: a
      // worker's stop signals and the primary's requests are kept from here on, and SIGHUP
      // waits for the server it reloads.
      const slot = workerSlot();
      const hangup: Hangup = {};
      const workers = workersOpt(values, command);
      const primary = workers > 1 && cluster.isPrimary;
      const startTimeoutSeconds = durationOpt(values, 'worker-start-timeout', command, 'MESHANICS_WORKER_START_TIMEOUT') ?? DEFAULT_WORKER_START_TIMEOUT_SECONDS;
      // setTimeout takes at most 2^31-1 ms and fires at once beyond: "30d" would kill every worker.
      if (startTimeoutSeconds > MAX_WORKER_START_TIMEOUT_SECONDS) throw new UsageError('--worker-start-timeout must be at most 24h', command.name);
      if (slot !== undefined) joinCluster(onHangup(hangup));
      else if (!primary) process.on('SIGHUP', onHangup(hangup));
      // Asynchronous log writes: a daemon must not stall device calls on a slow stdout. The
      // primary writes through process.stdout, the stream it passes the workers' lines on.
      const logger = await createLogger({
        level: logLevel(values, command, 'info'),
        ...(primary ? { stream: process.stdout, fields: { process: 'primary' } } : { fd: 1, sync: false }),
        ...(slot !== undefined ? { fields: { worker: slot } } : {}),
      });
      hangup.logger = logger;
      const options = await serveOptions(values, command);
      if (primary) {
        const [{ runPrimary }, { initDataDir }] = await Promise.all([import('../cluster/primary.js'), import('../config/data-dir.js')]);
        return runPrimary({
          workers,
          logger,
          stopTimeoutMs: SHUTDOWN_GRACE_MS + WORKER_STOP_MARGIN_MS,
          startTimeoutMs: startTimeoutSeconds * 1000,
          async prepare() {
            const ctx = await initDataDir({
              dataDir: options.dataDir,
              hostnames: options.hostnames ?? [],
              ...(options.trustDomain !== undefined ? { trustDomain: options.trustDomain } : {}),
              ...(options.databaseUrl !== undefined ? { databaseUrl: options.databaseUrl, databaseConnections: 1 } : {}),
              logger,
            });
            await ctx.close();
          },
        });
      }
      if (slot !== undefined) return serveAsWorker(slot, options, logger, hangup);
      const { startServer } = await import('../server.js');
      const server = await startServer({ ...options, logger });
      hangup.reloadApiTls = () => server.reloadApiTls();
      await waitForShutdownSignal(logger);
      await server.close();
      logger.flush();
    },
  },
  {
    name: 'init',
    summary: 'initialize the data dir: device CA, server certificate, TUF repository (idempotent)',
    usage: 'init [options]',
    options: { hostname: { type: 'string', multiple: true }, 'trust-domain': { type: 'string' } },
    help: [
      '  --hostname NAME              extra DNS name or IP for the server certificate, repeatable (env MESHANICS_HOSTNAMES)',
      `  --trust-domain DOMAIN        SPIFFE trust domain (env MESHANICS_TRUST_DOMAIN, default ${DEFAULT_TRUST_DOMAIN})`,
    ],
    async run(values, _positionals, command) {
      const trustDomain = stringOpt(values, 'trust-domain', 'MESHANICS_TRUST_DOMAIN');
      const { initDataDir } = await import('../config/data-dir.js');
      const ctx = await initDataDir({
        dataDir: dataDir(values),
        hostnames: hostnames(values),
        ...(trustDomain !== undefined ? { trustDomain } : {}),
        ...(databaseUrl(values) !== undefined ? { databaseUrl: databaseUrl(values)! } : {}),
        logger: await createLogger({ fd: 2, level: logLevel(values, command, 'info') }),
      });
      try {
        print({ dataDir: ctx.layout.root, trustDomain: ctx.trustDomain, tuf: ctx.tuf.versions() });
      } finally {
        await ctx.close();
      }
    },
  },
];
