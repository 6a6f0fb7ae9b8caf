// The server signs no target without a signed intent (custom.meshanics {kind, spec}), which
// agents require (core MESH_ERR_TUF_INTENT_UNSIGNED): TufRepository.addTarget refuses one from a
// caller that bypasses the types, and `tuf import` refuses an offline-signed targets version
// listing such targets directly, naming them, with nothing on disk changed.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Metadata, MetadataKind } from '@tufjs/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDataDir, type MeshanicsContext } from '../src/config/data-dir.js';
import { isMeshError } from '../src/errors.js';
import { isTufError, type NewTarget } from '../src/tuf/index.js';
import { loadKeyFile, signMetadata } from '../src/tuf/keys.js';
import { signTargets } from '../src/tuf/offline.js';
import { startTestServer, tempDir, type TestServer } from './helpers.js';
import { tufFingerprint } from './helpers/tuf.js';

let t: TestServer;
let importer: MeshanicsContext;
let transfer: string;

/** The next targets version as `tuf sign-targets` writes it, with `direct` listed in it and signed by the (embedded, online) targets key. */
async function targetsFileListing(direct: Record<string, unknown>): Promise<string> {
  const onlineKeys = path.join(transfer, 'online-keys.json');
  fs.writeFileSync(onlineKeys, JSON.stringify(await importer.tuf.onlineKeys()));
  const out = path.join(transfer, `targets-${crypto.randomUUID()}.json`);
  signTargets({ onlineKeysFile: onlineKeys, rootFile: path.join(importer.layout.tufMetadataDir, 'root.json'), out });
  const json = JSON.parse(fs.readFileSync(out, 'utf8')) as { signed: { targets: Record<string, unknown> } };
  for (const [p, custom] of Object.entries(direct)) {
    json.signed.targets[p] = { length: 1, hashes: { sha256: 'ab'.repeat(32) }, ...(custom === undefined ? {} : { custom }) };
  }
  const md = Metadata.fromJSON(MetadataKind.Targets, json as never);
  signMetadata(md, loadKeyFile(path.join(importer.layout.tufKeysDir, 'targets.pem'), 'targets'), true);
  fs.writeFileSync(out, JSON.stringify(md.toJSON()));
  return out;
}

beforeAll(async () => {
  t = await startTestServer();
  importer = await openDataDir({ dataDir: t.dataDir, ...t.database });
  transfer = tempDir('meshanics-transfer-');
});
afterAll(async () => {
  await importer?.close();
  await t.close();
});

describe('TufRepository.addTarget requires a signed intent', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['no custom at all', undefined, /no "custom" object/],
    ['custom without meshanics', { other: 1 }, /no "custom.meshanics" object/],
    ['a kind that is not a string', { meshanics: { kind: 7, spec: {} } }, /"custom.meshanics.kind" is 7, not a non-empty string/],
    ['an empty kind', { meshanics: { kind: '', spec: {} } }, /"custom.meshanics.kind" is "", not a non-empty string/],
    ['no spec', { meshanics: { kind: 'model' } }, /"custom.meshanics.spec" is undefined, not an object/],
    ['a spec that is an array', { meshanics: { kind: 'model', spec: [] } }, /"custom.meshanics.spec" is \[\], not an object/],
  ];
  for (const [what, custom, message] of cases) {
    it(`refuses ${what} with MESH_ERR_ARTIFACT_INTENT_UNSIGNED, signing nothing`, async () => {
      const before = importer.tuf.versions();
      const target = { path: 'bare/1.0.0/bare', sha256: 'ab'.repeat(32), length: 1, ...(custom === undefined ? {} : { custom }) } as unknown as NewTarget;
      const err = await importer.tuf.addTarget(target).catch((e: unknown) => e);
      expect(isMeshError(err) && err.code, String(err)).toBe('MESH_ERR_ARTIFACT_INTENT_UNSIGNED');
      expect((err as Error).message).toMatch(message);
      expect(importer.tuf.versions()).toEqual(before);
      expect(importer.tuf.hasTarget('bare/1.0.0/bare')).toBe(false);
    });
  }
});

describe('tuf import refuses targets listed directly without a signed intent', () => {
  it('names every such target path, with MESH_ERR_TUF_IMPORT_INTENT_UNSIGNED, and changes nothing', async () => {
    const file = await targetsFileListing({
      'good/1.0.0/good': { meshanics: { kind: 'model', spec: {} } },
      'bare/1.0.0/bare': undefined,
      'typed/1.0.0/typed': { meshanics: { kind: ['model'], spec: {} } },
      'nospec/1.0.0/nospec': { meshanics: { kind: 'model' } },
    });
    const before = tufFingerprint(importer);
    const err = await importer.tuf.importSigned({ targets: fs.readFileSync(file) }).catch((e: unknown) => e);
    expect(isTufError(err) && err.code, String(err)).toBe('MESH_ERR_TUF_IMPORT_INTENT_UNSIGNED');
    const message = (err as Error).message;
    expect(message).toMatch(/^targets v\d+ lists 3 target\(s\) without a signed kind and spec/);
    for (const p of ['bare/1.0.0/bare', 'typed/1.0.0/typed', 'nospec/1.0.0/nospec']) expect(message).toContain(p);
    expect(message).not.toContain('good/1.0.0/good');
    expect((err as { details?: Record<string, unknown> }).details).toEqual({ paths: ['bare/1.0.0/bare', 'typed/1.0.0/typed', 'nospec/1.0.0/nospec'] });
    expect(tufFingerprint(importer)).toEqual(before);
  });

  it('refuses target paths with an empty, "." or ".." segment (a URL outside the targets prefix), naming each, with MESH_ERR_TUF_IMPORT_INVALID', async () => {
    const intent = { meshanics: { kind: 'model', spec: {} } };
    const file = await targetsFileListing({ 'good/1.0.0/good': intent, '../escape/x': intent, 'a//b': intent, 'a/./b': intent });
    const before = tufFingerprint(importer);
    const err = await importer.tuf.importSigned({ targets: fs.readFileSync(file) }).catch((e: unknown) => e);
    expect(isTufError(err) && err.code, String(err)).toBe('MESH_ERR_TUF_IMPORT_INVALID');
    expect((err as Error).message).toMatch(
      /^targets v\d+ lists 3 target path\(s\) agents refuse: "\.\.\/escape\/x" must be "\/"-separated segments, none of them empty, "\." or "\.\." \(found "\.\."\)/,
    );
    expect((err as { details?: Record<string, unknown> }).details).toEqual({ paths: ['../escape/x', 'a//b', 'a/./b'] });
    expect(tufFingerprint(importer)).toEqual(before);
  });

  it('imports a targets version whose direct targets all carry one', async () => {
    const file = await targetsFileListing({ 'good/1.0.0/good': { meshanics: { kind: 'model', spec: { path: '/x' } } } });
    const before = importer.tuf.versions();
    const result = await importer.tuf.importSigned({ targets: fs.readFileSync(file) });
    expect(result.targets?.version).toBe(before.targets + 1);
    expect(importer.tuf.readState().targets.metadata.signed.targets['good/1.0.0/good']?.custom).toEqual({ meshanics: { kind: 'model', spec: { path: '/x' } } });
  });
});
