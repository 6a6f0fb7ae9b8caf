// tuf: the offline-key ceremony (TUF spec 6.1). `keygen`, `sign-root`, `sign-targets`, `sign` and `merge-signatures` run
// on the offline machine and never open a data dir; `online-keys`, `import` and `status` run
// next to the server (also while `serve` runs: every repository write takes the data-dir
// write lock, and `serve` re-reads metadata and keys from disk on every use).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TUF_SIGN_COMMANDS } from './tuf-sign-commands.js';
import { durationOpt, intOpt, print, printFromDataDir, required, requireFlags, stringOpt, UsageError, withDataDir, type Command, type Values } from './args.js';

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
 * The inputs `sign-root` and `sign-targets` share: the online-keys export and one output file.
 * Missing flags are named together (the shared two plus the command's own) before --expires is
 * checked, so one retry fixes them all.
 */
function offlineSigningInput(values: Values, command: Command, extraRequired: string[]): { keysDir?: string; onlineKeysFile: string; out: string; expiresInMs?: number } {
  requireFlags(values, command, ['online-keys', ...extraRequired, 'out']);
  const expiresInMs = expiresMs(values, command);
  const keys = stringOpt(values, 'keys');
  return {
    ...(keys !== undefined ? { keysDir: path.resolve(keys) } : {}),
    onlineKeysFile: path.resolve(required(values, 'online-keys', command)),
    out: path.resolve(required(values, 'out', command)),
    ...(expiresInMs !== undefined ? { expiresInMs } : {}),
  };
}

function fileList(values: Values, flag: string): string[] | undefined {
  const v = values[flag];
  return Array.isArray(v) && v.length > 0 ? v.map((f) => path.resolve(f)) : undefined;
}

/** A threshold flag: a positive integer (the upper bound, n keys, is checked by sign-root). */
function thresholdOpt(values: Values, flag: string, command: Command): number | undefined {
  if (stringOpt(values, flag) === undefined) return undefined;
  const k = intOpt(values, flag, command, 1);
  if (k < 1) throw new UsageError(`--${flag} must be at least 1`, command.name);
  return k;
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
    summary: 'offline: write root version N+1 naming n root and n targets keys with thresholds k, and the server online keys; signed by the keys given, if any',
    usage:
      'tuf sign-root --online-keys FILE --out FILE (--keys DIR | --root-key FILE ... --targets-key FILE ...) [--threshold K] [--root-threshold K] [--targets-threshold K] [--sign-key FILE ...] [--previous-root-key FILE] [--expires DURATION]',
    options: {
      keys: { type: 'string' },
      'root-key': { type: 'string', multiple: true },
      'targets-key': { type: 'string', multiple: true },
      threshold: { type: 'string' },
      'root-threshold': { type: 'string' },
      'targets-threshold': { type: 'string' },
      'sign-key': { type: 'string', multiple: true },
      'online-keys': { type: 'string' },
      out: { type: 'string' },
      'previous-root-key': { type: 'string' },
      expires: { type: 'string' },
    },
    help: [
      "  --root-key FILE        a root key holder's public key (ROLE.pub.json from `tuf keygen`, or the .pem), repeat once per holder (n)",
      "  --targets-key FILE     a targets key holder's public key, repeat once per holder",
      '  --threshold K          how many distinct keys must sign root and targets (default 1); 1 <= K <= n',
      '  --root-threshold K     overrides --threshold for root',
      '  --targets-threshold K  overrides --threshold for targets',
      '  --sign-key FILE        a private key to sign with here (repeatable); holders may instead each run `tuf sign` on the file',
      '  --keys DIR             single-key ceremony: DIR/root.* and DIR/targets.* name one key each (when --root-key/--targets-key',
      '                         are not given), and DIR/root.pem, when present, signs',
      '  --online-keys FILE     the `tuf online-keys` export copied from the server',
      '  --out FILE             where to write the root (signed in turn with `tuf sign`, then `tuf import` on the server)',
      '  --previous-root-key FILE  also sign with this current root key (same as --sign-key); when the current root key is',
      '                         still online (embedded default) the server adds its signature at import',
      '  --expires DURATION     lifetime, e.g. 365d (default 365d)',
      '  A new root needs a threshold of the current root keys and of its own (TUF spec 5.3.4); the output shows how many',
      '  of its own it has (status) and which key ids are missing.',
      OFFLINE_NOTE,
    ],
    async run(values, _positionals, command) {
      const input = offlineSigningInput(values, command, []);
      const rootKeyFiles = fileList(values, 'root-key');
      const targetsKeyFiles = fileList(values, 'targets-key');
      if (!input.keysDir && (!rootKeyFiles || !targetsKeyFiles))
        throw new UsageError('give --keys DIR, or --root-key FILE and --targets-key FILE (each once per holder)', command.name);
      const both = thresholdOpt(values, 'threshold', command);
      const rootThreshold = thresholdOpt(values, 'root-threshold', command) ?? both;
      const targetsThreshold = thresholdOpt(values, 'targets-threshold', command) ?? both;
      const signKeyFiles = fileList(values, 'sign-key');
      const previous = stringOpt(values, 'previous-root-key');
      const { signRoot } = await import('../tuf/offline.js');
      print(
        signRoot({
          ...input,
          ...(rootKeyFiles ? { rootKeyFiles } : {}),
          ...(targetsKeyFiles ? { targetsKeyFiles } : {}),
          ...(rootThreshold !== undefined ? { rootThreshold } : {}),
          ...(targetsThreshold !== undefined ? { targetsThreshold } : {}),
          ...(signKeyFiles ? { signKeyFiles } : {}),
          ...(previous !== undefined ? { previousRootKeyFile: path.resolve(previous) } : {}),
        }),
      );
    },
  },
  {
    name: 'tuf sign-targets',
    summary: 'offline: write top-level targets version N+1 that delegates a terminating slice of names to the server publisher key; signed by the keys given, if any',
    usage: 'tuf sign-targets --online-keys FILE --root FILE --out FILE [--keys DIR] [--sign-key FILE ...] [--delegate-path PATTERN ...] [--expires DURATION]',
    options: {
      keys: { type: 'string' },
      'sign-key': { type: 'string', multiple: true },
      'online-keys': { type: 'string' },
      root: { type: 'string' },
      out: { type: 'string' },
      'delegate-path': { type: 'string', multiple: true },
      expires: { type: 'string' },
    },
    help: [
      '  --keys DIR             single-key ceremony: DIR/targets.pem signs',
      '  --sign-key FILE        a private targets key to sign with here (repeatable); holders may instead each run `tuf sign`',
      '  --online-keys FILE     the `tuf online-keys` export copied from the server (publisher key, current version)',
      '  --root FILE            the root that will be trusted (the one `tuf sign-root` wrote); must list every signing key;',
      '                         the output shows its targets threshold (status) and the key ids still missing',
      '  --out FILE             where to write the signed targets metadata',
      '  --delegate-path PATTERN  NAME/VERSION/FILE glob per segment, repeatable (default */*/*: every artifact);',
      '                         e.g. --delegate-path "cam-*/*/*" lets the server publish only names starting cam-',
      '  --expires DURATION     lifetime, e.g. 90d (default 90d)',
      OFFLINE_NOTE,
    ],
    async run(values, _positionals, command) {
      const input = offlineSigningInput(values, command, ['root']);
      const paths = values['delegate-path'];
      const signKeyFiles = fileList(values, 'sign-key');
      const { signTargets } = await import('../tuf/offline.js');
      print(
        signTargets({
          ...input,
          ...(signKeyFiles ? { signKeyFiles } : {}),
          rootFile: path.resolve(required(values, 'root', command)),
          ...(Array.isArray(paths) ? { delegatePaths: paths } : {}),
        }),
      );
    },
  },
  ...TUF_SIGN_COMMANDS,
  {
    name: 'tuf import',
    summary: 'server: verify and install a root and/or targets version signed offline, re-sign snapshot and timestamp, retire online root/targets keys',
    usage: 'tuf import [--root FILE] [--targets FILE]',
    options: { root: { type: 'string' }, targets: { type: 'string' } },
    help: [
      '  --root FILE            root version N+1 from `tuf sign-root`, signed by its holders (`tuf sign`, `tuf merge-signatures`)',
      '  --targets FILE         targets version N+1 from `tuf sign-targets` (required with a root that changes the targets key)',
      '  Refuses (changing nothing) with MESH_ERR_TUF_IMPORT_* on a wrong version, signature, key or delegation. Fewer than',
      '  the threshold of valid signatures from distinct keys is MESH_ERR_TUF_IMPORT_SIGNATURE (a new root short of its own',
      '  root threshold, or targets short of the root targets threshold) or MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE (a new',
      '  root short of the current root threshold, TUF spec 5.3.4); the message and details.missing name the key ids missing.',
      '  Targets listed directly without custom.meshanics {kind, spec} are MESH_ERR_TUF_IMPORT_INTENT_UNSIGNED (details.paths).',
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
    summary: 'server: TUF metadata versions, which role keys are online in the data dir, the root and targets thresholds, and the publisher delegation',
    usage: 'tuf status',
    options: {},
    help: ['  thresholds: per offline role, the k of n keys (key ids) the trusted root requires'],
    async run(values, _positionals, command) {
      const { trustedThresholds } = await import('../tuf/offline.js');
      await printFromDataDir(values, command, (ctx) => ({
        versions: ctx.tuf.versions(),
        keys: ctx.tuf.keyCustody(),
        thresholds: trustedThresholds(path.join(ctx.layout.tufMetadataDir, 'root.json')),
        delegatedPaths: ctx.tuf.delegatedPaths(),
      }));
    },
  },
];
