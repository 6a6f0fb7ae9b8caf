// config/ owns how a server instance is set up: the data dir and the context opened from it (this file), defaults
// (defaults.ts), durations (durations.ts), listen addresses (listen-address.ts), the endpoints devices are told
// (public-endpoints.ts) and the temp-fsync-rename writer every folder uses (atomic-file.ts).
// May import: ../errors.ts, observability/log.ts, @meshanics/core/contract. atomic-file, defaults, durations and
// listen-address import nothing of the server but errors.ts, because everything imports them.
// Exception: this file opens what the data dir holds, so it imports store/, tuf/repository.ts, pki/ (lazily) and
// catalog/custom-plugin-schemas.ts; public-endpoints.ts takes a type from enrollment/http.ts.
//
// The data dir holds everything a server instance is: its database, device CA, server TLS
// certificate and TUF repository. `serve` and one-shot CLI commands may use it at the same
// time; the database write lock serializes every change that spans several files.
import { watchCustomSchemas } from '../catalog/custom-plugin-schemas.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { deviceSpiffeId } from '@meshanics/core/contract';
import { ensurePrivateDirSync, PUBLIC_FILE_MODE, writeFileAtomicSync } from '@meshanics/core/kit';
import { MeshError } from '../errors.js';
import { silentLogger, type Logger } from '../observability/log.js';
// PKI modules load @peculiar/x509 (slow to import): loaded on first use, so one-shot CLI
// commands that never touch a certificate start fast.
import type { DeviceCa } from '../pki/device-ca.js';
import type { ServerTlsMaterial } from '../pki/server-certificate.js';
import { isPostgresUrl, openStore, type QueryObserver, type Store } from '../store/index.js';
import { TufRepository } from '../tuf/repository.js';

import { DEFAULT_TRUST_DOMAIN } from './defaults.js';

export { DEFAULT_TRUST_DOMAIN };
const DATA_DIR_FORMAT = 1;

export interface DataDirLayout {
  root: string;
  configFile: string;
  databaseFile: string;
  pkiDir: string;
  caKeyFile: string;
  caCertFile: string;
  serverKeyFile: string;
  serverCertFile: string;
  /** Seals the device API's TLS session tickets (pki/session-ticket-key.ts); shared by the replicas. */
  sessionTicketKeyFile: string;
  tufKeysDir: string;
  tufMetadataDir: string;
  tufTargetsDir: string;
  /** Uploads in progress; on the targets' file system so the final move is a rename. */
  tufStagingDir: string;
  /** Uploaded device log bundles, `<log request id>.gz`; private (logs can hold anything). */
  logsDir: string;
}

export function dataDirLayout(dataDir: string): DataDirLayout {
  const root = path.resolve(dataDir);
  return {
    root,
    configFile: path.join(root, 'config.json'),
    databaseFile: path.join(root, 'meshanics.db'),
    pkiDir: path.join(root, 'pki'),
    caKeyFile: path.join(root, 'pki', 'ca.key'),
    caCertFile: path.join(root, 'pki', 'ca.crt'),
    serverKeyFile: path.join(root, 'pki', 'server.key'),
    serverCertFile: path.join(root, 'pki', 'server.crt'),
    sessionTicketKeyFile: path.join(root, 'pki', 'session-ticket.key'),
    tufKeysDir: path.join(root, 'tuf', 'keys'),
    tufMetadataDir: path.join(root, 'tuf', 'repo', 'metadata'),
    tufTargetsDir: path.join(root, 'tuf', 'repo', 'targets'),
    tufStagingDir: path.join(root, 'tuf', 'staging'),
    logsDir: path.join(root, 'logs'),
  };
}

export interface DataDirConfig {
  format: number;
  /** Fixed at init: every issued certificate names it, so it can never change afterwards. */
  trustDomain: string;
  createdAt: string;
  /**
   * Where the database is: absent or `sqlite` (meshanics.db in the data dir), or `postgres`
   * (the URL is given to every process, never stored: it may carry a password).
   */
  database?: 'sqlite' | 'postgres';
}

/**
 * The database of a data dir: the SQLite file inside it, or the PostgreSQL URL the process
 * was given. A data dir initialized on one engine refuses the other, so a CLI command run
 * without the URL can never silently work on an empty SQLite database instead.
 */
function databaseLocation(layout: DataDirLayout, config: DataDirConfig | undefined, databaseUrl: string | undefined): string {
  const wanted = databaseUrl !== undefined ? 'postgres' : 'sqlite';
  const stored = config?.database ?? 'sqlite';
  if (config && stored !== wanted) {
    throw new MeshError(
      'MESH_ERR_CONFIG_DATABASE_MISMATCH',
      stored === 'postgres'
        ? `data dir ${layout.root} keeps its database in PostgreSQL: pass --database-url (or set MESHANICS_DATABASE_URL)`
        : `data dir ${layout.root} keeps its database in ${layout.databaseFile} (SQLite), not in PostgreSQL: drop --database-url / MESHANICS_DATABASE_URL`,
    );
  }
  if (databaseUrl !== undefined && !isPostgresUrl(databaseUrl)) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `--database-url must be a postgres:// or postgresql:// URL`);
  }
  return databaseUrl ?? layout.databaseFile;
}

/** An open data dir: what every server operation works on. Close it when done. */
export interface MeshanicsContext {
  layout: DataDirLayout;
  trustDomain: string;
  store: Store;
  tuf: TufRepository;
  logger: Logger;
  deviceCa(): Promise<DeviceCa>;
  close(): Promise<void>;
}

function readConfig(layout: DataDirLayout): DataDirConfig | undefined {
  let text: string;
  try {
    text = fs.readFileSync(layout.configFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const config = JSON.parse(text) as DataDirConfig;
    if (typeof config.trustDomain !== 'string') throw new Error('trustDomain missing');
    return config;
  } catch (err) {
    throw new MeshError('MESH_ERR_DATADIR_CORRUPT', `${layout.configFile} is invalid: ${(err as Error).message}`, { cause: err });
  }
}

function validateTrustDomain(trustDomain: string): void {
  try {
    deviceSpiffeId({ trustDomain, fleet: 'x', name: 'x' });
  } catch {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `invalid trust domain "${trustDomain}": lowercase DNS name expected`);
  }
}

function createContext(layout: DataDirLayout, config: DataDirConfig, store: Store, logger: Logger): MeshanicsContext {
  let ca: Promise<DeviceCa> | undefined;
  return {
    layout,
    trustDomain: config.trustDomain,
    store,
    tuf: new TufRepository({ keysDir: layout.tufKeysDir, metadataDir: layout.tufMetadataDir }, async (fn) => await store.withWriteLock(fn)),
    logger,
    deviceCa: () => (ca ??= import('../pki/device-ca.js').then((pki) => pki.loadDeviceCa({ keyFile: layout.caKeyFile, certFile: layout.caCertFile }))),
    close: async () => await store.close(),
  };
}

export interface InitDataDirOptions {
  dataDir: string;
  /** Required to match the stored one on an initialized data dir; defaults to meshanics.local. */
  trustDomain?: string;
  /** Extra DNS names or IPs for the server certificate. */
  hostnames?: readonly string[];
  logger?: Logger;
  /** A PostgreSQL URL; absent: the SQLite database inside the data dir. */
  databaseUrl?: string;
  /** Sees every database statement's duration (metrics). */
  observeDatabase?: QueryObserver;
  /** PostgreSQL: connections in each of this process's two pools (readers, writers). */
  databaseConnections?: number;
}

export interface InitializedDataDir extends MeshanicsContext {
  serverTls: ServerTlsMaterial;
}

/**
 * Creates whatever is missing (database, trust domain, device CA, server certificate, TUF
 * repository) and opens the data dir. Idempotent, and safe against a concurrent first start.
 */
export async function initDataDir(options: InitDataDirOptions): Promise<InitializedDataDir> {
  const logger = options.logger ?? silentLogger();
  const layout = dataDirLayout(options.dataDir);
  if (options.trustDomain !== undefined) validateTrustDomain(options.trustDomain);
  // Created private; an existing dir the operator chose keeps its mode (we only own what is inside).
  fs.mkdirSync(layout.root, { recursive: true, mode: 0o700 });
  ensurePrivateDirSync(layout.pkiDir);
  ensurePrivateDirSync(layout.tufKeysDir);
  for (const dir of [layout.tufMetadataDir, layout.tufTargetsDir, layout.tufStagingDir]) fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  ensurePrivateDirSync(layout.logsDir);

  const store = await openStore(databaseLocation(layout, readConfig(layout), options.databaseUrl), {
    observe: options.observeDatabase,
    ...(options.databaseConnections !== undefined ? { connections: options.databaseConnections } : {}),
  });
  try {
    const config = await store.withWriteLock(() => {
      const existing = readConfig(layout);
      if (existing) {
        databaseLocation(layout, existing, options.databaseUrl);
        if (options.trustDomain !== undefined && options.trustDomain !== existing.trustDomain) {
          throw new MeshError('MESH_ERR_CONFIG_TRUST_DOMAIN_MISMATCH', `data dir ${layout.root} belongs to trust domain "${existing.trustDomain}", not "${options.trustDomain}"`);
        }
        return existing;
      }
      const created: DataDirConfig = {
        format: DATA_DIR_FORMAT,
        trustDomain: options.trustDomain ?? DEFAULT_TRUST_DOMAIN,
        createdAt: new Date().toISOString(),
        ...(options.databaseUrl !== undefined ? { database: 'postgres' as const } : {}),
      };
      writeFileAtomicSync(layout.configFile, JSON.stringify(created, null, 2) + '\n', { mode: PUBLIC_FILE_MODE });
      logger.info({ dataDir: layout.root, trustDomain: created.trustDomain }, 'data dir created');
      return created;
    });

    const { generateDeviceCa, writeDeviceCaIfMissing } = await import('../pki/device-ca.js');
    const { ensureServerCertificate } = await import('../pki/server-certificate.js');
    const caFiles = { keyFile: layout.caKeyFile, certFile: layout.caCertFile };
    if (!fs.existsSync(layout.caCertFile)) {
      // Generate outside the lock (async), write inside it; the loser of a race discards its CA.
      const generated = await generateDeviceCa(config.trustDomain);
      if (await store.withWriteLock(() => writeDeviceCaIfMissing(caFiles, generated))) {
        logger.info({ caCert: layout.caCertFile }, 'device CA created');
      }
    }
    const context = createContext(layout, config, store, logger);
    const ca = await context.deviceCa();
    const server = await ensureServerCertificate(
      { keyFile: layout.serverKeyFile, certFile: layout.serverCertFile },
      ca,
      options.hostnames ?? [],
      async (fn) => await store.withWriteLock(fn),
    );
    if (server.issued) logger.info({ serverCert: layout.serverCertFile, hostnames: options.hostnames ?? [] }, 'server certificate issued');
    if (await context.tuf.initialize()) logger.info({ metadataDir: layout.tufMetadataDir }, 'TUF repository created');
    // Custom kinds, kept in step with the data dir: `plugin-schema add` run anywhere reaches this
    // running process (and every replica on the shared data dir) at its next lookup, no restart.
    watchCustomSchemas(layout.root, (err) => logger.warn({ err: err.message }, 'custom plugin schemas not reloaded; the previous ones stay'));
    return { ...context, serverTls: server.material };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/** Has `initDataDir` completed on this dir (trust domain fixed, TUF root written)? */
export function isDataDirInitialized(dataDir: string): boolean {
  const layout = dataDirLayout(dataDir);
  return fs.existsSync(layout.configFile) && fs.existsSync(layout.caCertFile) && fs.existsSync(path.join(layout.tufMetadataDir, 'root.json'));
}

/** Opens an initialized data dir (one-shot CLI commands); never creates anything but a migrated database. */
export async function openDataDir(options: { dataDir: string; logger?: Logger; databaseUrl?: string }): Promise<MeshanicsContext> {
  const layout = dataDirLayout(options.dataDir);
  const config = readConfig(layout);
  if (!config || !fs.existsSync(path.join(layout.tufMetadataDir, 'root.json'))) {
    throw new MeshError('MESH_ERR_DATADIR_NOT_INITIALIZED', `${layout.root} is not an initialized data dir (run \`meshanics-server init --data-dir ${options.dataDir}\`)`);
  }
  // Custom kinds an operator added (vendor plugins' schemas) validate like built-in ones.
  watchCustomSchemas(layout.root, (err) => options.logger?.warn({ err: err.message }, 'custom plugin schemas not reloaded'));
  const store = await openStore(databaseLocation(layout, config, options.databaseUrl));
  return createContext(layout, config, store, options.logger ?? silentLogger());
}
