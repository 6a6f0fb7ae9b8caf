// logs request | ls | download; audit ls | export | verify
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AuditEvent, ChainStatus, LogRequest } from '../api-types.js';
import { seg } from '../client.js';
import { type Command, deviceRef, FLEET_OPTION, intOpt, PAGING_OPTIONS, paging, str } from '../command.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { bytes, keyValues, line, pageFooter, printJson, table, when } from '../output.js';

/** Writes a response body to a file (atomically: temp file, then rename) or to stdout. */
async function writeBody(body: ReadableStream<Uint8Array>, out: string, stdout: NodeJS.WritableStream, onChunk: (chunk: Uint8Array) => void): Promise<void> {
  const toStdout = out === '-';
  const tmp = toStdout ? '' : path.join(path.dirname(path.resolve(out)), `.${path.basename(out)}.${process.pid}.part`);
  const sink: NodeJS.WritableStream = toStdout ? stdout : fs.createWriteStream(tmp, { mode: 0o600 });
  try {
    for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
      onChunk(chunk);
      if (!sink.write(chunk)) await new Promise((r) => sink.once('drain', r));
    }
    if (!toStdout) {
      await new Promise<void>((resolve, reject) => {
        (sink as fs.WriteStream).once('error', reject);
        sink.end(() => resolve());
      });
      fs.renameSync(tmp, out);
    }
  } catch (err) {
    if (!toStdout) {
      (sink as fs.WriteStream).destroy();
      fs.rmSync(tmp, { force: true });
    }
    throw err instanceof CliError ? err : new CliError(`writing ${toStdout ? 'stdout' : out} failed: ${(err as Error).message}`);
  }
}

function chainText(c: ChainStatus): string {
  if (c.verified) return `verified: ${c.count} event(s), head ${c.headHash}`;
  return `BROKEN${c.firstBrokenSeq !== undefined ? ` at event ${c.firstBrokenSeq}` : ''}${c.problem ? `: ${c.problem}` : ''} (${c.count} event(s))`;
}

export const LOG_AUDIT_COMMANDS: Command[] = [
  {
    path: ['logs', 'request'],
    summary: 'ask a device for its logs; it uploads a gzip bundle after its next heartbeat',
    usage: 'FLEET/NAME | NAME --fleet FLEET [--since TIME] [--until TIME] [--max-bytes N]',
    options: {
      ...FLEET_OPTION,
      since: { type: 'string', arg: 'TIME', description: 'RFC 3339 start of the window (default: unbounded)' },
      until: { type: 'string', arg: 'TIME', description: 'RFC 3339 end of the window' },
      'max-bytes': { type: 'string', arg: 'N', description: 'byte budget of the bundle' },
    },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const { fleet, name } = deviceRef(ctx, ctx.positionals[0]!);
      const since = str(ctx.values, 'since');
      const until = str(ctx.values, 'until');
      for (const [flag, v] of [
        ['since', since],
        ['until', until],
      ] as const) {
        if (v !== undefined && Number.isNaN(Date.parse(v))) throw new UsageError(`--${flag} must be an RFC 3339 time, not "${v}"`);
      }
      const maxBytes = intOpt(ctx.values, 'max-bytes', { min: 1 });
      const r = await ctx.api().post<{ id: string }>(`/devices${seg(fleet, name)}/log-requests`, {
        ...(since ? { since } : {}),
        ...(until ? { until } : {}),
        ...(maxBytes !== undefined ? { maxBytes } : {}),
      });
      if (ctx.json) return printJson(ctx.out.stdout, r);
      line(ctx.out.stdout, `Requested logs of ${fleet}/${name}: request ${r.id}`);
      line(ctx.out.stdout, `Check with "meshanics logs ls --fleet ${fleet} --device ${name}", then "meshanics logs download ${r.id}".`);
    },
  },
  {
    path: ['logs', 'ls'],
    summary: 'list log requests: pending until the device uploads, then fulfilled with size',
    usage: '[--fleet FLEET] [--device NAME] [--limit N] [--offset N] [--all]',
    options: { ...FLEET_OPTION, device: { type: 'string', arg: 'NAME', description: 'only this device' }, ...PAGING_OPTIONS },
    async run(ctx) {
      const page = await ctx.api().list<LogRequest>('/log-requests', { fleet: ctx.fleet(), device: str(ctx.values, 'device') }, paging(ctx.values));
      if (ctx.json) return printJson(ctx.out.stdout, page);
      if (page.items.length === 0) line(ctx.out.stdout, 'No log requests.');
      else
        line(
          ctx.out.stdout,
          table(
            ['ID', 'DEVICE', 'STATUS', 'SIZE', 'REQUESTED', 'BY', 'FULFILLED'],
            page.items.map((r) => [
              r.id,
              `${r.fleet}/${r.device}`,
              r.status,
              r.sizeBytes === null ? '-' : bytes(r.sizeBytes),
              when(r.requestedAt),
              r.requestedBy,
              when(r.fulfilledAt),
            ]),
          ),
        );
      const footer = pageFooter(page);
      if (footer) line(ctx.out.stdout, footer);
    },
  },
  {
    path: ['logs', 'download'],
    summary: 'download the gzip bundle a device uploaded (exit 5 while it is still pending)',
    usage: 'ID [--out FILE|-]',
    options: { out: { type: 'string', arg: 'FILE|-', description: "where to write it (default: the server's file name in the current directory; - for stdout)" } },
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const id = ctx.positionals[0]!;
      let out = str(ctx.values, 'out');
      if (out === '-' && ctx.out.stdout.isTTY) throw new UsageError('refusing to write a gzip bundle to a terminal: use --out FILE or a pipe');
      const res = await ctx.api().raw('GET', `/log-requests${seg(id)}/bundle`, { headers: { accept: 'application/gzip' } });
      if (out === undefined) {
        const m = /filename="([^"/\\]+)"/.exec(res.headers.get('content-disposition') ?? '');
        out = m?.[1] ?? `logs-${id}.gz`;
      }
      const hash = createHash('sha256');
      let size = 0;
      await writeBody(res.body!, out, ctx.out.stdout, (chunk) => {
        hash.update(chunk);
        size += chunk.length;
      });
      const sha256 = hash.digest('hex');
      const expected = res.headers.get('x-content-sha256');
      if (expected && expected !== sha256) {
        if (out !== '-') fs.rmSync(out, { force: true });
        throw new CliError(`the bundle's sha256 ${sha256} does not match the server's ${expected}; nothing kept`);
      }
      const result = { id, file: out === '-' ? null : path.resolve(out), sizeBytes: size, sha256 };
      if (out === '-') return;
      if (ctx.json) printJson(ctx.out.stdout, result);
      else line(ctx.out.stdout, `Wrote ${out} (${bytes(size)}, sha256 ${sha256})`);
    },
  },
  {
    path: ['audit', 'ls'],
    summary: 'list audit events, newest first',
    usage: '[--limit N] [--offset N] [--all]',
    options: { ...PAGING_OPTIONS },
    async run(ctx) {
      const page = await ctx.api().list<AuditEvent>('/audit', {}, paging(ctx.values));
      if (ctx.json) return printJson(ctx.out.stdout, page);
      if (page.items.length === 0) line(ctx.out.stdout, 'No audit events.');
      else
        line(
          ctx.out.stdout,
          table(
            ['SEQ', 'WHEN', 'ACTOR', 'ACTION', 'SUBJECT'],
            page.items.map((e) => [e.seq, when(e.at), e.actor, e.action, e.subject]),
          ),
        );
      const footer = pageFooter(page);
      if (footer) line(ctx.out.stdout, footer);
    },
  },
  {
    path: ['audit', 'export'],
    summary: 'export the audit trail as NDJSON, oldest first, verified on the way (exit 6 if the chain is broken)',
    usage: '[--out FILE]',
    description: ['The last line is {"chain": {count, verified, headHash, firstBrokenSeq?}}. Written to stdout unless --out.'],
    options: { out: { type: 'string', arg: 'FILE', description: 'write to this file instead of stdout' } },
    async run(ctx) {
      const out = str(ctx.values, 'out') ?? '-';
      const res = await ctx.api().raw('GET', '/audit/export', { headers: { accept: 'application/x-ndjson' } });
      let tail = '';
      let lines = 0;
      const decoder = new TextDecoder();
      await writeBody(res.body!, out, ctx.out.stdout, (chunk) => {
        const text = decoder.decode(chunk, { stream: true });
        for (const ch of text) if (ch === '\n') lines++;
        tail = (tail + text).slice(-64 * 1024);
      });
      const last = tail.trimEnd().split('\n').at(-1) ?? '';
      let chain: ChainStatus | undefined;
      try {
        chain = (JSON.parse(last) as { chain?: ChainStatus }).chain;
      } catch {
        // handled below
      }
      if (!chain) throw new CliError('the export did not end with the chain summary line: it is incomplete');
      if (out !== '-') {
        if (ctx.json) printJson(ctx.out.stdout, { file: path.resolve(out), lines, chain });
        else line(ctx.out.stdout, `Wrote ${out}: ${chain.count} event(s); chain ${chainText(chain)}`);
      }
      if (!chain.verified) {
        ctx.out.stderr.write(`meshanics: audit chain ${chainText(chain)}\n`);
        return EXIT.AUDIT_BROKEN;
      }
    },
  },
  {
    path: ['audit', 'verify'],
    summary: 'verify the audit hash chain on the server (exit 0 verified, 6 broken)',
    usage: '',
    async run(ctx) {
      const c = await ctx.api().get<ChainStatus>('/audit/verify');
      if (ctx.json) printJson(ctx.out.stdout, c);
      else
        line(
          ctx.out.stdout,
          keyValues([
            ['chain', c.verified ? 'verified' : 'BROKEN'],
            ['events', c.count],
            ['head hash', c.headHash],
            ...(c.verified
              ? []
              : ([
                  ['first broken', c.firstBrokenSeq ?? '-'],
                  ['problem', c.problem ?? '-'],
                ] as Array<[string, string | number]>)),
          ]),
        );
      return c.verified ? EXIT.OK : EXIT.AUDIT_BROKEN;
    },
  },
];
