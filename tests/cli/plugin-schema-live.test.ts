// `plugin-schema add` against a RUNNING server (issue 27): a schema with `$id` is fine, adding
// it again changes nothing, a new version upgrades the kind, an upgrade that rejects the spec of
// an artifact still in flight is refused, and `serve` accepts a kind added (or upgraded) after it
// started, without a restart. Real processes: meshanics-server serve and CLI, the meshanics CLI.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverCli } from '../../scripts/lib/processes.mjs';
import { createApiKey, meshanics, startApiServer, type ApiServer } from './harness.js';

let work: string;
let server: ApiServer;
let env: Record<string, string>;

/** A side-effect-free schema module as a vendor ships it, with an $id like examples/artifact-directory. */
async function schemaModule(name: string, properties: Record<string, unknown>, required: string[] = []): Promise<string> {
  const file = path.join(work, `${name}.mjs`);
  const schema = { $id: 'https://acme.example/schemas/blob.json', type: 'object', additionalProperties: false, required, properties };
  await writeFile(file, `export const ARTIFACT_KIND = 'blob';\nexport const SPEC_SCHEMA = ${JSON.stringify(schema)};\n`);
  return file;
}

async function push(version: string, spec: unknown) {
  const file = path.join(work, `blob-${version}.bin`);
  await writeFile(file, `blob ${version}`);
  return meshanics(['artifacts', 'publish', file, '--name', 'blob', '--version', version, '--kind', 'blob', '--spec', JSON.stringify(spec), '--json'], env);
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'meshanics-schema-live-'));
  const dataDir = path.join(work, 'server');
  await serverCli(dataDir, ['init']);
  server = await startApiServer(dataDir);
  env = { MESHANICS_API_URL: server.api, MESHANICS_API_KEY: await createApiKey(dataDir, 'ops') };
  await serverCli(dataDir, ['device', 'issue-cert', '--fleet', 'lab', '--name', 'dev-1', '--out', path.join(work, 'creds')]);
}, 120_000);

afterAll(async () => {
  await server?.child.stop();
  await rm(work, { recursive: true, force: true });
});

describe('plugin-schema add on a running server', () => {
  it('teaches the running serve a new kind: refused before, accepted after, no restart', async () => {
    const before = await push('0.9.0', { slot: 'a' });
    expect(before.code).toBe(2);
    expect(before.stderr).toContain('body/kind must be one of');
    const added = await serverCli(server.dataDir, ['plugin-schema', 'add', await schemaModule('v1', { slot: { enum: ['a', 'b'] } })]);
    expect(added).toMatchObject({ what: 'artifact', kind: 'blob', change: 'added' });
    const after = await push('1.0.0', { slot: 'a' });
    expect(after.stderr).toBe('');
    expect(after.code).toBe(0);
  });

  it('adds the same schema (with $id) again without a change, and lists it without an Ajv "already exists" crash', async () => {
    const again = await serverCli(server.dataDir, ['plugin-schema', 'add', path.join(work, 'v1.mjs')]);
    expect(again).toMatchObject({ kind: 'blob', change: 'unchanged', rejectedSpecs: [] });
    const listed = await serverCli(server.dataDir, ['plugin-schema', 'ls']);
    expect(listed.schemas).toEqual([expect.objectContaining({ what: 'artifact', kind: 'blob' })]);
  });

  it('upgrades the kind in the running serve: a field of the new version is accepted at once', async () => {
    expect((await push('1.1.0', { slot: 'a', compression: 'zstd' })).stderr).toContain('must NOT have additional property "compression"');
    const upgraded = await serverCli(server.dataDir, ['plugin-schema', 'add', await schemaModule('v2', { slot: { enum: ['a', 'b'] }, compression: { enum: ['none', 'zstd'] } })]);
    expect(upgraded).toMatchObject({ kind: 'blob', change: 'upgraded', rejectedSpecs: [] });
    const pushed = await push('1.1.0', { slot: 'a', compression: 'zstd' });
    expect(pushed.stderr).toBe('');
    expect(pushed.code).toBe(0);
  });

  it('refuses an upgrade that rejects the spec of an artifact still assigned, naming it, and changes nothing', async () => {
    await serverCli(server.dataDir, ['assign', '--fleet', 'lab', '--device', 'dev-1', '--artifact', 'blob@1.1.0', '--probe-type', 'file', '--probe-spec', '{"path":"/tmp/x"}']);
    const refused = await serverCli(server.dataDir, ['plugin-schema', 'add', await schemaModule('v3', { slot: { enum: ['a', 'b'] }, compression: { enum: ['none'] } })]).then(
      () => '',
      (e: Error) => e.message,
    );
    expect(refused).toContain('MESH_ERR_PLUGIN_SCHEMA_IN_USE');
    expect(refused).toContain('blob@1.1.0 (spec/compression must be one of "none"; held by assignment on lab/dev-1)');
    // Nothing changed: the running server still takes the v2 spec.
    expect((await push('1.2.0', { slot: 'b', compression: 'zstd' })).code).toBe(0);
  });

  it('lists published artifacts nobody holds whose spec an accepted upgrade rejects', async () => {
    const upgraded = await serverCli(server.dataDir, [
      'plugin-schema',
      'add',
      await schemaModule('v4', { slot: { enum: ['a', 'b'] }, compression: { enum: ['none', 'zstd'] } }, ['compression']),
    ]);
    expect(upgraded.change).toBe('upgraded');
    expect(upgraded.rejectedSpecs).toEqual([{ artifact: 'blob@1.0.0', errors: ['spec/compression is required'] }]);
  });
});
