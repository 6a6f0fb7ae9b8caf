// tuf sign / tuf merge-signatures: how the k-of-n holders of the offline root and targets keys
// add their signatures to one file, each on their own machine (TUF spec 6.1). Either the file
// goes from holder to holder and each runs `tuf sign` on it in turn, or each signs their own
// copy and one person runs `tuf merge-signatures` over the copies. Neither opens a data dir.
import * as path from 'node:path';
import { print, required, requireFlags, stringOpt, UsageError, type Command } from './args.js';

const OFFLINE_NOTE = '  (runs on a key holder machine; --data-dir is ignored)';

export const TUF_SIGN_COMMANDS: Command[] = [
  {
    name: 'tuf sign',
    summary: 'offline: add one holder signature to a root or targets file from `tuf sign-root` / `tuf sign-targets` (idempotent per key)',
    usage: 'tuf sign --key FILE --in FILE [--out FILE] [--root FILE]',
    options: { key: { type: 'string' }, in: { type: 'string' }, out: { type: 'string' }, root: { type: 'string' } },
    help: [
      '  --key FILE             your private key (ROLE.pem from `tuf keygen`); it never leaves your machine',
      '  --in FILE              the root or targets file to sign',
      '  --out FILE             where to write the signed file (default: --in, rewritten in place)',
      '  --root FILE            the current root: lets a holder of a current root key sign a new root that no longer lists',
      '                         their key (TUF spec 5.3.4 wants the old threshold too), and checks a targets signer is listed',
      '  Signing twice with the same key leaves one signature. The output lists every signature and, per threshold, the',
      '  key ids that still have to sign (thresholds[].missing).',
      OFFLINE_NOTE,
    ],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['key', 'in']);
      const out = stringOpt(values, 'out');
      const root = stringOpt(values, 'root');
      const { signFile } = await import('../tuf/offline.js');
      print(
        signFile({
          keyFile: path.resolve(required(values, 'key', command)),
          inFile: path.resolve(required(values, 'in', command)),
          ...(out !== undefined ? { out: path.resolve(out) } : {}),
          ...(root !== undefined ? { rootFile: path.resolve(root) } : {}),
        }),
      );
    },
  },
  {
    name: 'tuf merge-signatures',
    summary: 'offline: collect the signatures of copies of one root or targets file that holders signed separately into one file',
    usage: 'tuf merge-signatures --out FILE [--root FILE] FILE FILE...',
    options: { out: { type: 'string' }, root: { type: 'string' } },
    positionals: { min: 1, max: 64 },
    help: [
      '  FILE...                copies of the same file, each signed by one or more holders with `tuf sign`',
      '  --out FILE             where to write the file with every signature (then `tuf import` it on the server)',
      '  --root FILE            the current root, to report its threshold too (as for `tuf sign`)',
      '  Refuses with MESH_ERR_TUF_MERGE_MISMATCH when the copies differ in their signed content, or when one key id',
      '  carries two different signatures; a signature present in several copies is kept once.',
      OFFLINE_NOTE,
    ],
    async run(values, positionals, command) {
      requireFlags(values, command, ['out']);
      if (positionals.length === 0) throw new UsageError('give the signed copies to merge', command.name);
      const root = stringOpt(values, 'root');
      const { mergeSignatures } = await import('../tuf/offline.js');
      print(
        mergeSignatures({
          inFiles: positionals.map((f) => path.resolve(f)),
          out: path.resolve(required(values, 'out', command)),
          ...(root !== undefined ? { rootFile: path.resolve(root) } : {}),
        }),
      );
    },
  },
];
