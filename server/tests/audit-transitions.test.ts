// Every state an assignment moves through feeds the hash-chained audit trail (device API spec,
// "Status lifecycle": the per-device states "feed the rollout detail view and the audit
// trail"), not only its outcome; a progress report (DOWNLOADING again with more bytes) is not
// a transition and adds no event. On both engines, through real gRPC over mTLS, and the chain
// still verifies (the function and the `audit verify` CLI process).
import { execFile } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAudit } from '../src/audit/trail.js';
import { publishArtifact } from '../src/catalog/publish.js';
import { createAssignment } from '../src/fleet/assignments.js';
import { testEngines } from './engines.js';
import { DeviceClient, provision, REGISTER_REQUEST, startTestServer, tempDir, type TestServer } from './helpers.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const { engines } = await testEngines();

describe.each(engines)('audit trail of device state transitions on $name', (engine) => {
  let t: TestServer;
  const clients: DeviceClient[] = [];

  beforeAll(async () => {
    t = await startTestServer(engine.name === 'postgres' ? { databaseUrl: await engine.fresh() } : {});
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await t.close();
  });

  let published = 0;
  async function scenario(name: string) {
    const creds = await provision(t.ctx, 'lab', name);
    const client = new DeviceClient(t.server.grpcAddress, creds);
    clients.push(client);
    await client.call('Register', {
      ...REGISTER_REQUEST,
      capabilities: [
        { kind: 'ARTIFACT', name: 'model', version: '0.1.0' },
        { kind: 'PROBE', name: 'file', version: '0.1.0' },
      ],
    });
    let sequence = 0;
    return {
      async assign(version: string) {
        const file = path.join(tempDir(), `blob-${++published}`);
        fs.writeFileSync(file, crypto.randomBytes(1024));
        await publishArtifact(t.ctx, { file, name: `${name}-model`, version, kind: 'model', spec: {} });
        const { assignmentId } = await createAssignment(t.ctx, {
          fleet: 'lab',
          device: name,
          artifact: `${name}-model`,
          version,
          probe: { type: 'file', spec: { path: '/run/ready' }, timeoutSeconds: 5, attempts: 1, initialDelaySeconds: 0 },
        });
        return assignmentId;
      },
      report(assignmentId: string, state: string, reason = '', bytesDone = 0) {
        sequence += 1;
        return client.call('ReportArtifactStatus', { assignmentId, state, sequence, reason, bytesDone, bytesTotal: 1024, deviceTime: new Date().toISOString() });
      },
    };
  }

  async function actions(assignmentId: string): Promise<string[]> {
    return (await t.ctx.store.listAudit({ subject: `assignment:${assignmentId}` })).map((e) => e.action);
  }

  it('records DOWNLOADING, VERIFYING, APPLYING and HEALTHY once each; progress reports add no event', async () => {
    const d = await scenario('aud-healthy');
    const id = await d.assign('1.0.0');
    await d.report(id, 'DOWNLOADING');
    await d.report(id, 'DOWNLOADING', '', 256);
    await d.report(id, 'DOWNLOADING', '', 768);
    await d.report(id, 'VERIFYING', '', 1024);
    await d.report(id, 'APPLYING');
    await d.report(id, 'HEALTHY', 'attempt 1/1: healthy');
    expect(await actions(id)).toEqual(['assignment.created', 'assignment.downloading', 'assignment.verifying', 'assignment.applying', 'assignment.healthy']);
    const events = await t.ctx.store.listAudit({ subject: `assignment:${id}` });
    expect(events[1]).toMatchObject({ actor: expect.stringMatching(/^device:spiffe:\/\//), details: { artifact: 'aud-healthy-model@1.0.0', sequence: 1 } });
    expect(events.at(-1)).toMatchObject({ details: { reason: 'attempt 1/1: healthy', sequence: 6 } });
  });

  it('records a rollback after APPLYING as ROLLED_BACK with its reason', async () => {
    const d = await scenario('aud-rolled');
    const id = await d.assign('2.0.0');
    await d.report(id, 'DOWNLOADING');
    await d.report(id, 'VERIFYING', '', 1024);
    await d.report(id, 'APPLYING');
    await d.report(id, 'ROLLED_BACK', 'MESH_ERR_PROBE_FAILED: probe failed on every attempt; previous version restored');
    expect(await actions(id)).toEqual(['assignment.created', 'assignment.downloading', 'assignment.verifying', 'assignment.applying', 'assignment.rolled_back']);
    const last = (await t.ctx.store.listAudit({ subject: `assignment:${id}`, order: 'desc', limit: 1 }))[0]!;
    expect(last.details).toMatchObject({ reason: 'MESH_ERR_PROBE_FAILED: probe failed on every attempt; previous version restored' });
  });

  it('records FAILED after DOWNLOADING, and a FAILED refused at validation with no state before it', async () => {
    const d = await scenario('aud-failed');
    const fetched = await d.assign('3.0.0');
    await d.report(fetched, 'DOWNLOADING');
    await d.report(fetched, 'FAILED', 'MESH_ERR_DIGEST_MISMATCH: bytes differ');
    expect(await actions(fetched)).toEqual(['assignment.created', 'assignment.downloading', 'assignment.failed']);
    const refused = await d.assign('4.0.0');
    await d.report(refused, 'FAILED', 'MESH_ERR_ALLOWLIST_DENIED: binary "/bin/true" is not on the allowlist (allowlist.execBinaries)');
    expect(await actions(refused)).toEqual(['assignment.created', 'assignment.failed']);
  });

  it('keeps the chain verifiable: verifyAudit and the `audit verify` CLI process', async () => {
    expect(fs.existsSync(CLI), 'run `npx tsc -b` first').toBe(true);
    const verified = await verifyAudit({ store: t.ctx.store });
    expect(verified.verified).toBe(true);
    expect(verified.count).toBeGreaterThanOrEqual(14);
    const args = ['audit', 'verify', '--data-dir', t.dataDir, ...(t.database.databaseUrl ? ['--database-url', t.database.databaseUrl] : [])];
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, ...args]);
    expect(JSON.parse(stdout)).toMatchObject({ count: verified.count, verified: true, headHash: verified.headHash });
  });
});
