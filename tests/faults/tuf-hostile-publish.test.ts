// Issue 23 as an attacker with a legitimate key would try it: a key of fleet "red" holding only
// artifacts.write publishes values a device cannot verify. Real processes on 127.0.0.1: the
// server (`meshanics-server serve --api-listen`), the REST API, and a real agent of ANOTHER
// fleet ("blue"). Before the fix, the 3,000-deep manifest answered 201 and from then on every
// device of every fleet failed every verification ("publisher was signed by 0/1 keys").
// Now: gate (a) answers 400 naming the field and the bound; values handed straight to the TUF
// repository (below gate (a), from a second process on the same data dir, like the CLI) are
// refused by gate (b). After each hostile attempt the blue agent installs a good artifact
// HEALTHY, and /readyz stays ready.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDataDir } from '@meshanics/server';
import { serverCli, startAgent, startServer, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { assignArgs, publishModel } from '../e2e/helpers/steps.js';

let root: string;
let serverDir: string;
let server: Child;
let agent: Child;
let api: string;
let redKey: string;
let goodVersion = 0;

/** `{"a":[[[...]]]}` with `depth` levels of objects and arrays in all. */
function nestedJson(depth: number): string {
  return `{"a":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
}

async function restPublish(fields: Record<string, string>): Promise<{ status: number; body: any }> {
  const form = new FormData();
  for (const [k, v] of Object.entries({ name: 'hostile', version: '1.0.0', kind: 'model', ...fields })) form.append(k, v);
  form.append('file', new Blob([randomBytes(64)]), 'hostile.bin');
  const res = await fetch(`${api}/api/v1/artifacts`, { method: 'POST', headers: { authorization: `Bearer ${redKey}` }, body: form });
  return { status: res.status, body: await res.json() };
}

/** A good artifact for every fleet, assigned to the blue device, must end HEALTHY with its bytes live. */
async function blueInstallsGood(): Promise<void> {
  const version = `1.0.${++goodVersion}`;
  const bytes = randomBytes(16 * 1024);
  await publishModel(serverDir, root, { name: 'good', version }, bytes);
  const ready = path.join(root, 'ready', version);
  await writeFile(ready, 'ok');
  const { assignmentId } = await serverCli(serverDir, assignArgs({ fleet: 'blue', device: 'edge-blue', artifact: `good@${version}`, readyFile: ready, probeTimeout: 2 }));
  const view = await waitForAssignment(serverDir, assignmentId);
  expect(view.state, view.reason).toBe('HEALTHY');
  expect(await readFile(path.join(root, 'agent', 'artifacts', 'model', 'good', 'model'))).toEqual(bytes);
  const ready2 = await fetch(`${api}/readyz`);
  expect(ready2.status).toBe(200);
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-hostile-'));
  serverDir = path.join(root, 'server');
  await mkdir(path.join(root, 'ready'), { recursive: true });
  server = await startServer(serverDir, { extraArgs: ['--api-listen', '127.0.0.1:0'] });
  api = server.api; // startServer keeps the address its 'server listening' line gave
  const created = await serverCli(serverDir, ['apikey', 'create', '--name', 'red-publisher', '--fleet', 'red', '--approve', '--permissions', 'artifacts.write']);
  redKey = JSON.stringify(created).match(/mesh_key_[A-Za-z0-9_-]+/)![0];
  const certDir = path.join(root, 'creds');
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'blue', '--name', 'edge-blue', '--out', certDir]);
  agent = startAgent(server, certDir, path.join(root, 'agent'));
  await agent.waitForLine((l: any) => l?.msg === 'registered');
  await blueInstallsGood();
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('hostile publishes by a fleet key (gate a: REST answers 400, nothing signed)', () => {
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['a manifest nested 3,000 deep', { manifest: nestedJson(3000) }, /body\/manifest\/a\/0\/0.* is nested deeper than 32 levels/],
    ['a spec nested 3,000 deep', { spec: nestedJson(3000) }, /body\/spec\/a\/0\/0.* is nested deeper than 32 levels/],
    ['a fractional number in the manifest', { manifest: '{"ratio":0.5}' }, /body\/manifest\/ratio is 0.5/],
    ['manifest keys that collapse into one on a device', { manifest: '{"\\ud800":1,"\\udc00":2}' }, /not well-formed Unicode/],
  ];
  for (const [what, fields, message] of cases) {
    it(`refuses ${what}; a blue agent still installs a good artifact HEALTHY`, async () => {
      const { status, body } = await restPublish(fields);
      expect(status, JSON.stringify(body)).toBe(400);
      // Errors are { "error": "message", "code": "MESH_ERR_..." } (docs/operator-api.md).
      expect(body.code).toBe('MESH_ERR_ARTIFACT_OUT_OF_BOUNDS');
      expect(body.error).toMatch(message);
      expect(body.error).toContain('signed TUF metadata must stay verifiable by every device');
      await blueInstallsGood();
    });
  }
});

describe('hostile values below gate (a) (gate b: the device TUF client refuses the candidate)', () => {
  const cases: Array<[string, () => Record<string, unknown>]> = [
    ['a custom nested 200 deep', () => JSON.parse(nestedJson(200))],
    ['keys that collapse into one on a device', () => JSON.parse('{"\\ud800":1,"\\udc00":2}')],
  ];
  for (const [what, custom] of cases) {
    it(`refuses ${what} from a second process on the data dir; a blue agent still installs a good artifact HEALTHY`, async () => {
      const ctx = await openDataDir({ dataDir: serverDir });
      try {
        const before = ctx.tuf.versions();
        const err = await ctx.tuf
          .addTarget({ path: 'hostile/2.0.0/hostile', sha256: 'ab'.repeat(32), length: 64, custom: { meshanics: { kind: 'model', spec: custom() } } })
          .catch((e: unknown) => e);
        expect((err as { code?: string }).code).toBe('MESH_ERR_TUF_CANDIDATE_UNVERIFIABLE');
        expect(ctx.tuf.versions()).toEqual(before);
      } finally {
        await ctx.close();
      }
      await blueInstallsGood();
    });
  }
});
