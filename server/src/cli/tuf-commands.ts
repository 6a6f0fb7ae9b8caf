// tuf: the offline-key ceremony (TUF spec 6.1). `keygen`, `sign-root` and `sign-targets` run
// on the offline machine and never open a data dir; `online-keys`, `import` and `status` run
// next to the server (also while `serve` runs: every repository write takes the data-dir
// write lock, and `serve` re-reads metadata and keys from disk on every use).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { durationOpt, print, printFromDataDir, required, requireFlags, stringOpt, UsageError, withDataDir, type Command, type Values } from './args.js';

function expiresMs(values: Values, command: Command): number | undefined {
  const seconds = durationOpt(values, 'expires', command);
  if (seconds !== undefined && seconds < 1) throw new UsageError('--expires must be positive', command.name);
  return seconds === undefined ? undefined : seconds * 1000;
}

function readFileFlag(values: Values, flag: string): Buffer | undefined {
  const file = stringOpt(values, flag);
  return file === undefined ? undefined : fs.readFileSync(path.resolve(file));
}

/**
 * The inputs `sign-root` and `sign-targets` share: both read DIR keys and the online-keys
 * export and write one file. Missing flags are named together (the shared three plus the
 * command's own) before --expires is checked, so one retry fixes them all.
 */
function offlineSigningInput(values: Values, command: Command, extraRequired: string[]): { keysDir: string; onlineKeysFile: string; out: string; expiresInMs?: number } {
  requireFlags(values, command, ['keys', 'online-keys', ...extraRequired, 'out']);
  const expiresInMs = expiresMs(values, command);
  return {
    keysDir: path.resolve(required(values, 'keys', command)),
    onlineKeysFile: path.resolve(required(values, 'online-keys', command)),
    out: path.resolve(required(values, 'out', command)),
    ...(expiresInMs !== undefined ? { expiresInMs } : {}),
  };
}

const OFFLINE_NOTE = '  (runs on the offline machine; --data-dir is ignored)';

export const TUF_COMMANDS: Command[] = [
  {
    name: 'tuf keygen',
    summary: 'offline: create an ed25519 root or targets key (DIR/ROLE.pem 0600, DIR/ROLE.pub.json); prints its key id',
    usage: 'tuf keygen --role root|targets --out DIR',
    options: { role: { type: 'string' }, out: { type: 'string' } },
    help: ['  --role ROLE            root or targets', '  --out DIR              directory for the key files (created 0700; existing keys are never overwritten)', OFFLINE_NOTE],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['role', 'out']);
      const role = required(values, 'role', command);
      if (role !== 'root' && role !== 'targets') throw new UsageError('--role must be root or targets', command.name);
      const { keygen } = await import('../tuf/offline.js');
      print(keygen(role, path.resolve(required(values, 'out', command))));
    },
  },
  {
    name: 'tuf online-keys',
    summary: 'server: export the public keys of the online snapshot, timestamp and publisher roles and the current versions, for the offline machine',
    usage: 'tuf online-keys [--out FILE]',
    options: { out: { type: 'string' } },
    help: ['  --out FILE             write the export to FILE instead of stdout'],
    async run(values, _positionals, command) {
      const exported = await withDataDir(values, command, (ctx) => ctx.tuf.onlineKeys());
      const out = stringOpt(values, 'out');
      if (out === undefined) return print(exported);
      const { PUBLIC_FILE_MODE, writeFileAtomicSync } = await import('@meshanics/core/kit');
      writeFileAtomicSync(path.resolve(out), JSON.stringify(exported, null, 2) + '\n', { mode: PUBLIC_FILE_MODE });
      print({ out: path.resolve(out), versions: exported.versions, keyids: Object.fromEntries(Object.entries(exported.keys).map(([r, k]) => [r, k.keyid])) });
    },
  },
  {
    name: 'tuf sign-root',
    summary: 'offline: sign root version N+1 naming the offline root and targets keys and the server online keys',
    usage: 'tuf sign-root --keys DIR --online-keys FILE --out FILE [--previous-root-key FILE] [--expires DURATION]',
    options: { keys: { type: 'string' }, 'online-keys': { type: 'string' }, out: { type: 'string' }, 'previous-root-key': { type: 'string' }, expires: { type: 'string' } },
    help: [
      '  --keys DIR             holds root.pem (signs) and targets.pem or targets.pub.json (from `tuf keygen`)',
      '  --online-keys FILE     the `tuf online-keys` export copied from the server',
      '  --out FILE             where to write the signed root (copy it to the server for `tuf import`)',
      '  --previous-root-key FILE  also sign with the current root key when it is offline too (rotating root again);',
      '                         the first switch needs none: the server signs with its online root key at import',
      '  --expires DURATION     lifetime, e.g. 365d (default 365d)',
      OFFLINE_NOTE,
    ],
    async run(values, _positionals, command) {
      const input = offlineSigningInput(values, command, []);
      const previous = stringOpt(values, 'previous-root-key');
      const { signRoot } = await import('../tuf/offline.js');
      print(signRoot({ ...input, ...(previous !== undefined ? { previousRootKeyFile: path.resolve(previous) } : {}) }));
    },
  },
  {
    name: 'tuf sign-targets',
    summary: 'offline: sign top-level targets version N+1 that delegates a terminating slice of names to the server publisher key',
    usage: 'tuf sign-targets --keys DIR --online-keys FILE --root FILE --out FILE [--delegate-path PATTERN ...] [--expires DURATION]',
    options: {
      keys: { type: 'string' },
      'online-keys': { type: 'string' },
      root: { type: 'string' },
      out: { type: 'string' },
      'delegate-path': { type: 'string', multiple: true },
      expires: { type: 'string' },
    },
    help: [
      '  --keys DIR             holds targets.pem',
      '  --online-keys FILE     the `tuf online-keys` export copied from the server (publisher key, current version)',
      '  --root FILE            the root that will be trusted (the one `tuf sign-root` wrote); must list targets.pem',
      '  --out FILE             where to write the signed targets metadata',
      '  --delegate-path PATTERN  NAME/VERSION/FILE glob per segment, repeatable (default */*/*: every artifact);',
      '                         e.g. --delegate-path "cam-*/*/*" lets the server publish only names starting cam-',
      '  --expires DURATION     lifetime, e.g. 90d (default 90d)',
      OFFLINE_NOTE,
    ],
    async run(values, _positionals, command) {
      const input = offlineSigningInput(values, command, ['root']);
      const paths = values['delegate-path'];
      const { signTargets } = await import('../tuf/offline.js');
      print(
        signTargets({
          ...input,
          rootFile: path.resolve(required(values, 'root', command)),
          ...(Array.isArray(paths) ? { delegatePaths: paths } : {}),
        }),
      );
    },
  },
  {
    name: 'tuf import',
    summary: 'server: verify and install a root and/or targets version signed offline, re-sign snapshot and timestamp, retire online root/targets keys',
    usage: 'tuf import [--root FILE] [--targets FILE]',
    options: { root: { type: 'string' }, targets: { type: 'string' } },
    help: [
      '  --root FILE            root version N+1 from `tuf sign-root`',
      '  --targets FILE         targets version N+1 from `tuf sign-targets` (required with a root that changes the targets key)',
      '  Refuses (changing nothing) with MESH_ERR_TUF_IMPORT_* on a wrong version, signature, key or delegation.',
    ],
    async run(values, _positionals, command) {
      if (stringOpt(values, 'root') === undefined && stringOpt(values, 'targets') === undefined) {
        throw new UsageError('give --root FILE, --targets FILE or both', command.name);
      }
      const root = readFileFlag(values, 'root');
      const targets = readFileFlag(values, 'targets');
      const result = await withDataDir(values, command, (ctx) =>
        ctx.tuf.importSigned(
          { ...(root ? { root } : {}), ...(targets ? { targets } : {}) },
          {
            onInstalled: async (r) => {
              const at = new Date().toISOString();
              if (r.root) await ctx.store.appendAudit({ at, actor: 'operator:cli', action: 'tuf.root_imported', subject: `tuf:root@${r.root.version}`, details: { ...r.root } });
              if (r.targets)
                await ctx.store.appendAudit({ at, actor: 'operator:cli', action: 'tuf.targets_imported', subject: `tuf:targets@${r.targets.version}`, details: { ...r.targets } });
              if (r.activatedOnlineKeys)
                await ctx.store.appendAudit({ at, actor: 'operator:cli', action: 'tuf.online_keys_rotated', subject: 'tuf:keys', details: { ...r.activatedOnlineKeys } });
              if (r.removedOnlineKeys.length > 0) {
                await ctx.store.appendAudit({ at, actor: 'operator:cli', action: 'tuf.online_keys_removed', subject: 'tuf:keys', details: { roles: r.removedOnlineKeys } });
              }
            },
          },
        ),
      );
      print(result);
    },
  },
  {
    name: 'tuf status',
    summary: 'server: TUF metadata versions, which role keys are online in the data dir, and the publisher delegation',
    usage: 'tuf status',
    options: {},
    help: [],
    async run(values, _positionals, command) {
      await printFromDataDir(values, command, (ctx) => ({ versions: ctx.tuf.versions(), keys: ctx.tuf.keyCustody(), delegatedPaths: ctx.tuf.delegatedPaths() }));
    },
  },
];
