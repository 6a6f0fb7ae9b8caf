// tuf rotate-online: replacing the online snapshot, timestamp and publisher keys (issue 29,
// server/src/tuf/online-rotation.ts). Staged because the new keys must be named by a root and
// a top-level targets version signed offline: `--stage` makes the pending keys and their
// export, the holders run `tuf sign-root` / `tuf sign-targets` on it, and `tuf import`
// activates them. Runs next to a running `serve` (the data-dir write lock orders them).
import * as path from 'node:path';
import { print, stringOpt, UsageError, withDataDir, type Command } from './args.js';

const MODES = ['stage', 'export', 'abandon'] as const;

export const TUF_ROTATE_COMMANDS: Command[] = [
  {
    name: 'tuf rotate-online',
    summary: 'server: replace the online snapshot, timestamp and publisher keys (staged: new keys stay pending until `tuf import` of a root and targets naming them)',
    usage: 'tuf rotate-online [--stage --out FILE | --export --out FILE | --abandon]',
    options: { stage: { type: 'boolean' }, export: { type: 'boolean' }, abandon: { type: 'boolean' }, out: { type: 'string' } },
    help: [
      '  --stage                create new snapshot, timestamp and publisher keys as pending (not used to sign yet)',
      '                         and write their public keys, in the `tuf online-keys` format, to --out',
      '  --export               write the pending keys export again (same keys) to --out',
      '  --abandon              delete the pending keys of a rotation not yet imported',
      '  --out FILE             the export for the offline machine: `tuf sign-root --online-keys FILE` and',
      '                         `tuf sign-targets --online-keys FILE`; then `tuf import --root R --targets T` here',
      '                         activates all three at once (the switch is signed by old and new keys) and deletes the old private keys',
      '  Without a mode: prints the staged rotation, if any.',
      '  Refuses with MESH_ERR_TUF_ROTATION_PENDING while one is staged, MESH_ERR_TUF_ROTATION_NONE when none is.',
    ],
    async run(values, _positionals, command) {
      const modes = MODES.filter((m) => values[m] === true);
      if (modes.length > 1) throw new UsageError(`give one of --${MODES.join(', --')}`, command.name);
      const mode = modes[0];
      const out = stringOpt(values, 'out');
      if ((mode === 'stage' || mode === 'export') && out === undefined) throw new UsageError(`--${mode} needs --out FILE`, command.name);
      if ((mode === undefined || mode === 'abandon') && out !== undefined) throw new UsageError('--out goes with --stage or --export', command.name);
      const result = await withDataDir(values, command, async (ctx) => {
        const at = new Date().toISOString();
        if (mode === undefined) return { pending: ctx.tuf.pendingOnlineRotation() ?? null };
        if (mode === 'abandon') {
          const pending = await ctx.tuf.abandonOnlineRotation();
          await ctx.store.appendAudit({ at, actor: 'operator:cli', action: 'tuf.online_keys_abandoned', subject: 'tuf:keys', details: { ...pending } });
          return { abandoned: pending };
        }
        const { pending, exported } = mode === 'stage' ? await ctx.tuf.stageOnlineRotation() : await ctx.tuf.exportOnlineRotation();
        // The export is public (public keys and versions); written atomically like `tuf online-keys --out`.
        const { PUBLIC_FILE_MODE, writeFileAtomicSync } = await import('@meshanics/core/kit');
        writeFileAtomicSync(path.resolve(out!), JSON.stringify(exported, null, 2) + '\n', { mode: PUBLIC_FILE_MODE });
        if (mode === 'stage') await ctx.store.appendAudit({ at, actor: 'operator:cli', action: 'tuf.online_keys_staged', subject: 'tuf:keys', details: { ...pending } });
        return { out: path.resolve(out!), pending };
      });
      print(result);
    },
  },
];
