// backup and restore: one archive of a data dir (backup.ts) and its way back (restore.ts).
import { MeshError } from '../errors.js';
import { createLogger, databaseUrl, dataDir, intOpt, logLevel, print, required, UsageError, withDataDir, type Command } from './args.js';

export const BACKUP_COMMANDS: Command[] = [
  {
    name: 'backup',
    summary: 'write a consistent backup of the data dir (and its SQLite database) to one archive, while the server runs',
    usage: 'backup --out FILE [--data-dir DIR]',
    options: { out: { type: 'string' } },
    help: [
      '  --out FILE             the archive to write (a tar file; replaced atomically). It holds the CA and TUF',
      '                         private keys: keep it encrypted and offline. With PostgreSQL the database is NOT',
      '                         in it: run pg_dump at the same time (docs/operations.md, "Backup and restore")',
    ],
    async run(values, _positionals, command) {
      const out = required(values, 'out', command);
      const { backupDataDir } = await import('./backup.js');
      const { isDataDirInitialized } = await import('../config/data-dir.js');
      // withDataDir would initialize a fresh dir: a backup of a typo'd path must not be a new CA.
      if (!isDataDirInitialized(dataDir(values))) {
        throw new MeshError('MESH_ERR_DATADIR_NOT_INITIALIZED', `${dataDir(values)} is not an initialized data dir: nothing to back up`);
      }
      const postgres = databaseUrl(values) !== undefined;
      const result = await withDataDir(values, command, (ctx) => backupDataDir(ctx, out, postgres));
      if (postgres) {
        const logger = await createLogger({ fd: 2, level: logLevel(values, command, 'warn') });
        logger.warn({ out: result.out }, 'the database is in PostgreSQL and is NOT in this backup: take a pg_dump of it now (docs/operations.md)');
        logger.flush();
      }
      print(result);
    },
  },
  {
    name: 'restore',
    summary: 'restore a backup archive into an empty data dir (verifies every file against the manifest first)',
    usage: 'restore --from FILE --data-dir DIR [--bump-tuf-versions N]',
    options: { from: { type: 'string' }, 'bump-tuf-versions': { type: 'string' } },
    help: [
      '  --from FILE            the archive `backup` wrote',
      '  --bump-tuf-versions N  re-sign the TUF timestamp, snapshot and publisher (and targets, if its key is online)',
      "                         at versions N above the backup's: devices refuse versions lower than those they",
      '                         already saw, so give N above the number of publishes and re-signings since the backup',
      '                         (e.g. 1000; docs/operations.md)',
      '  The data dir (--data-dir, required here) must be empty or absent. With a PostgreSQL backup only the files',
      '  are restored: pg_restore the database dump taken with it.',
    ],
    async run(values, _positionals, command) {
      const from = required(values, 'from', command);
      if (typeof values['data-dir'] !== 'string') throw new UsageError('--data-dir is required', command.name);
      const bump = values['bump-tuf-versions'] === undefined ? undefined : intOpt(values, 'bump-tuf-versions', command, 0);
      if (bump !== undefined && bump < 1) throw new UsageError(`--bump-tuf-versions must be 1 or more, got ${bump}`, command.name);
      const { restoreDataDir } = await import('./restore.js');
      const result = await restoreDataDir({ from, dataDir: dataDir(values), ...(bump !== undefined ? { bumpTufVersions: bump } : {}) });
      if (result.warnings.length > 0) {
        const logger = await createLogger({ fd: 2, level: logLevel(values, command, 'warn') });
        for (const w of result.warnings) logger.warn(w);
        logger.flush();
      }
      print(result);
    },
  },
];
