// artifacts publish | ls | show | withdraw
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Artifact, WithdrawnArtifact } from '../api-types.js';
import { seg } from '../client.js';
import { type Command, jsonArg, PAGING_OPTIONS, paging, requiredStr, str } from '../command.js';
import { CliError, UsageError } from '../errors.js';
import { bytes, keyValues, line, pageFooter, printJson, table, when } from '../output.js';
import { multipartFromFile, progressBar } from '../upload.js';

/** `name@version` */
export function artifactRef(raw: string): { name: string; version: string } {
  const at = raw.lastIndexOf('@');
  if (at <= 0 || at === raw.length - 1) throw new UsageError(`an artifact is NAME@VERSION, not "${raw}"`);
  return { name: raw.slice(0, at), version: raw.slice(at + 1) };
}

export const ARTIFACT_COMMANDS: Command[] = [
  {
    path: ['artifacts', 'publish'],
    summary: 'upload a file as an artifact version; the server signs it into TUF, then catalogs it',
    usage: 'FILE --name NAME --version VERSION --kind KIND [--spec JSON|@FILE] [--manifest JSON|@FILE] [--fleet FLEET]',
    description: [
      'The file is streamed from disk (multipart/form-data, field "file" after the other fields);',
      'a progress bar is drawn on stderr when it is a terminal. Versions are immutable: publishing',
      'a name and version twice exits 5 (conflict). Names are unique across fleets: a name belongs',
      'to the fleet of its first version, and publishing into a name of another fleet exits 5.',
    ],
    options: {
      name: { type: 'string', arg: 'NAME', description: 'artifact name' },
      version: { type: 'string', arg: 'VERSION', description: 'version (immutable once published)' },
      kind: { type: 'string', arg: 'KIND', description: 'artifact kind: model, config, container or a custom kind' },
      spec: { type: 'string', arg: 'JSON|@FILE', description: "the kind's spec, checked by the server with the kind plugin's schema" },
      manifest: { type: 'string', arg: 'JSON|@FILE', description: 'a JSON object kept in the catalog; its sha256 is signed into the TUF target' },
      fleet: {
        type: 'string',
        arg: 'FLEET',
        description: "the fleet it belongs to, or * for every fleet (default: the key's fleet; * for a * key)",
      },
      'no-progress': { type: 'boolean', description: 'no progress bar even on a terminal' },
    },
    positionals: { min: 1, max: 1 },
    examples: ['meshanics artifacts publish detector.onnx --name detector --version 2.0.0 --kind model'],
    async run(ctx) {
      const file = ctx.positionals[0]!;
      const name = requiredStr(ctx, 'name');
      const version = requiredStr(ctx, 'version');
      const kind = requiredStr(ctx, 'kind');
      const fields: Array<[string, string]> = [
        ['name', name],
        ['version', version],
        ['kind', kind],
      ];
      for (const f of ['spec', 'manifest']) {
        const raw = str(ctx.values, f);
        if (raw === undefined) continue;
        const value = await jsonArg(f, raw);
        if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`--${f} must be a JSON object`);
        fields.push([f, JSON.stringify(value)]);
      }
      const fleet = str(ctx.values, 'fleet');
      if (fleet !== undefined) fields.push(['fleet', fleet]);
      let stat: fs.Stats;
      try {
        stat = fs.statSync(file);
      } catch (err) {
        throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      if (!stat.isFile()) throw new UsageError(`${file} is not a regular file`);
      const api = ctx.api();
      const tty = ctx.out.stderr.isTTY === true && ctx.values['no-progress'] !== true;
      const progress = tty ? progressBar(ctx.out.stderr, `${name}@${version}`) : undefined;
      const upload = await multipartFromFile(fields, { field: 'file', path: file, fileName: path.basename(file) }, (done, total) => {
        progress?.update(done, total);
        if (done === total) progress?.finish(`uploaded ${bytes(total)}; the server is signing ${name}@${version}...`);
      });
      let res: Response;
      try {
        res = await api.raw('POST', '/artifacts', {
          body: upload.body,
          headers: { 'content-type': upload.contentType, 'content-length': String(upload.length) },
          duplex: 'half',
        });
      } catch (err) {
        progress?.finish();
        throw err;
      }
      const published = (await res.json()) as { name: string; version: string; kind: string; targetPath: string; sha256: string; length: number; fleet: string };
      if (!published?.sha256) throw new CliError(`unexpected answer from the server: ${JSON.stringify(published)}`);
      if (ctx.json) return printJson(ctx.out.stdout, published);
      line(
        ctx.out.stdout,
        keyValues([
          ['published', `${published.name}@${published.version}`],
          ['fleet', published.fleet],
          ['kind', published.kind],
          ['target', published.targetPath],
          ['sha256', published.sha256],
          ['length', `${published.length} (${bytes(published.length)})`],
        ]),
      );
    },
  },
  {
    path: ['artifacts', 'ls'],
    summary: 'list the artifact catalog (newest version of each name first)',
    usage: '[--name NAME] [--kind KIND] [--fleet FLEET] [--limit N] [--offset N] [--all]',
    options: {
      name: { type: 'string', arg: 'NAME', description: 'only this artifact name' },
      kind: { type: 'string', arg: 'KIND', description: 'only this kind' },
      fleet: { type: 'string', arg: 'FLEET', description: 'only artifacts of this fleet (* : those of every fleet)' },
      ...PAGING_OPTIONS,
    },
    async run(ctx) {
      const page = await ctx
        .api()
        .list<Artifact>('/artifacts', { name: str(ctx.values, 'name'), kind: str(ctx.values, 'kind'), fleet: str(ctx.values, 'fleet') }, paging(ctx.values));
      if (ctx.json) return printJson(ctx.out.stdout, page);
      if (page.items.length === 0) line(ctx.out.stdout, 'No artifacts.');
      else
        line(
          ctx.out.stdout,
          table(
            ['NAME', 'VERSION', 'FLEET', 'KIND', 'SIZE', 'SHA256', 'PUBLISHED'],
            page.items.map((a) => [a.name, a.version, a.fleet, a.kind, bytes(a.length), a.sha256.slice(0, 16), when(a.createdAt)]),
          ),
        );
      const footer = pageFooter(page);
      if (footer) line(ctx.out.stdout, footer);
    },
  },
  {
    path: ['artifacts', 'show'],
    summary: 'show one artifact version: kind, TUF target, sha256, length, spec, manifest',
    usage: 'NAME@VERSION',
    positionals: { min: 1, max: 1 },
    async run(ctx) {
      const { name, version } = artifactRef(ctx.positionals[0]!);
      const a = await ctx.api().get<Artifact>(`/artifacts${seg(name, version)}`);
      if (ctx.json) return printJson(ctx.out.stdout, a);
      line(
        ctx.out.stdout,
        keyValues([
          ['artifact', `${a.name}@${a.version}`],
          ['fleet', a.fleet],
          ['kind', a.kind],
          ['file', a.fileName],
          ['target', a.targetPath],
          ['sha256', a.sha256],
          ['length', `${a.length} (${bytes(a.length)})`],
          ['spec', JSON.stringify(a.spec)],
          ['manifest', a.manifest ? JSON.stringify(a.manifest) : null],
          ['published', when(a.createdAt)],
        ]),
      );
    },
  },
  {
    path: ['artifacts', 'withdraw'],
    summary: 'take an artifact version out of the signed targets; refused (exit 5) while a rollout or a device holds it',
    usage: 'NAME@VERSION',
    description: [
      'The server signs new TUF metadata without the version and marks it withdrawn in the catalog;',
      'the version can never be published again. While an active rollout or a device (assigned it,',
      'or running it) holds it, nothing changes and the refusal names them.',
    ],
    positionals: { min: 1, max: 1 },
    examples: ['meshanics artifacts withdraw detector@2.0.0'],
    async run(ctx) {
      const { name, version } = artifactRef(ctx.positionals[0]!);
      const w = await ctx.api().delete<WithdrawnArtifact>(`/artifacts${seg(name, version)}`);
      if (ctx.json) return printJson(ctx.out.stdout, w);
      line(
        ctx.out.stdout,
        keyValues([
          ['withdrawn', `${w.name}@${w.version}`],
          ['fleet', w.fleet],
          ['target', w.targetPath],
          ['at', when(w.withdrawnAt)],
        ]),
      );
    },
  },
];
