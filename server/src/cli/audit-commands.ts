// audit verify and audit export: read the hash-chained audit trail back and check every link.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { print, stringOpt, withDataDir, type Command } from './args.js';

async function writeLine(out: Writable, line: string): Promise<void> {
  if (!out.write(line)) await once(out, 'drain');
}

export const AUDIT_COMMANDS: Command[] = [
  {
    name: 'audit verify',
    summary: 'verify the hash chain of the audit trail (exit 0 verified, 1 broken; prints the result as JSON)',
    usage: 'audit verify',
    options: {},
    help: [],
    async run(values, _positionals, command) {
      const { verifyAudit } = await import('../audit/trail.js');
      const result = await withDataDir(values, command, (ctx) => verifyAudit(ctx));
      print(result);
      return result.verified ? 0 : 1;
    },
  },
  {
    name: 'audit export',
    summary: 'export the audit trail as NDJSON, oldest first, verifying the chain; the last line is {"chain": {...}} (exit 1 if broken)',
    usage: 'audit export [--out FILE]',
    options: { out: { type: 'string' } },
    help: ['  --out FILE             write the NDJSON to FILE (then print the chain result) instead of stdout'],
    async run(values, _positionals, command) {
      const { exportAudit } = await import('../audit/trail.js');
      const file = stringOpt(values, 'out');
      return withDataDir(values, command, async (ctx) => {
        let out: Writable = process.stdout;
        let tmp: string | undefined;
        if (file !== undefined) {
          tmp = path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.${process.pid}.tmp`);
          out = fs.createWriteStream(tmp, { mode: 0o600 });
        }
        let last = '';
        try {
          for await (const line of exportAudit(ctx)) {
            await writeLine(out, line);
            last = line;
          }
          if (tmp !== undefined) {
            const stream = out as fs.WriteStream;
            await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
            fs.renameSync(tmp, path.resolve(file!));
            tmp = undefined;
          }
        } finally {
          if (tmp !== undefined) fs.rmSync(tmp, { force: true });
        }
        const chain = (JSON.parse(last) as { chain: { verified: boolean } }).chain;
        if (file !== undefined) print({ out: path.resolve(file), chain });
        return chain.verified ? 0 : 1;
      });
    },
  },
];
