// The `meshanics` operator CLI as a process against a real server and its REST API, with
// simulated devices that heartbeat and report over the real device API: publishing streamed
// from disk with --json (conflict: exit 5), rollouts in waves (watch: 0 completed, 7 halted,
// 8 aborted; approve needs the right: exit 3), logs, and the audit chain (broken: exit 6).
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiServer, type CliEnvironment, cliEnvironment, meshanics, registerIdleDevices, SimDevice, until } from './harness.js';

let env: CliEnvironment;
let root: string;
let server: ApiServer;
let readerKey: string;
let admin: Record<string, string>;

const json = <T = any>(r: { stdout: string }): T => JSON.parse(r.stdout) as T;
/** `rollouts create ... --json` of `artifact` to `group` of `fleet`, probed by the file /run/app/ready. */
const createRollout = (fleet: string, artifact: string, group: string, ...more: string[]) =>
  meshanics(
    ['rollouts', 'create', '--fleet', fleet, '--artifact', artifact, '--group', group, '--probe-type', 'file', '--probe-spec', '{"path":"/run/app/ready"}', ...more, '--json'],
    admin,
  );

beforeAll(async () => {
  env = await cliEnvironment('meshanics-cli-rollouts-', ['sim-1', 'sim-2', 'sim-3', 'sim-4']);
  ({ root, server, readerKey, admin } = env);
  // A bad 2.0.0 rolls back on sim-2; everything else goes healthy.
  for (const s of env.sims) {
    s.outcome = (a) => (a.version === '2.0.0' && s.name === 'sim-2' ? 'ROLLED_BACK' : 'HEALTHY');
    s.start();
  }
  // A device that never heartbeats: its log request stays pending.
  env.sims.push(...(await SimDevice.provision(server, path.join(root, 'certs'), 'lab', ['idle-1'])));
});

afterAll(async () => {
  await env?.close();
});

describe('meshanics CLI: artifacts, rollouts, logs, audit', () => {
  it('publishes an artifact streamed from disk and prints JSON; a second publish is a conflict (5)', async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    const file = path.join(root, 'detector-1.0.0.onnx');
    await writeFile(file, bytes);
    const r = await meshanics(['artifacts', 'publish', file, '--name', 'detector', '--version', '1.0.0', '--kind', 'model', '--json'], admin);
    expect(r.stderr).toBe(''); // no progress bar: stderr is not a terminal
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toEqual({
      name: 'detector',
      version: '1.0.0',
      kind: 'model',
      targetPath: expect.stringMatching(/^detector\/1\.0\.0\//),
      sha256: createHash('sha256').update(bytes).digest('hex'),
      length: bytes.length,
      fleet: '*',
    });
    const again = await meshanics(['artifacts', 'publish', file, '--name', 'detector', '--version', '1.0.0', '--kind', 'model'], admin);
    expect(again.code).toBe(5);
    expect(again.stderr).toContain('already published');
    const badKind = await meshanics(['artifacts', 'publish', file, '--name', 'detector', '--version', '9.0.0', '--kind', 'nope'], admin);
    expect(badKind.code).toBe(2);
    expect(badKind.stderr).toMatch(/kind/);

    const v2 = path.join(root, 'detector-2.0.0.onnx');
    await writeFile(v2, randomBytes(4096));
    expect((await meshanics(['artifacts', 'publish', v2, '--name', 'detector', '--version', '2.0.0', '--kind', 'model', '--json'], admin)).code).toBe(0);
    const table = await meshanics(['artifacts', 'ls'], admin);
    expect(table.stdout).toMatch(/^NAME\s+VERSION\s+FLEET\s+KIND/);
    expect(table.stdout).toMatch(/detector\s+2\.0\.0\s+\*\s+model/);
    const show = await meshanics(['artifacts', 'show', 'detector@1.0.0', '--json'], admin);
    expect(json(show).sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect((await meshanics(['artifacts', 'show', 'detector@7.7.7'], admin)).code).toBe(4);
  });

  it('rolls out in waves: watch stops at the manual wave, approve needs the right, watch exits 0 when completed', async () => {
    const created = await createRollout('lab', 'detector@1.0.0', 'all-sims', '--devices', 'sim-1,sim-2,sim-3,sim-4', '--probe-attempts', '2', '--waves', '50,100:manual');
    expect(created.stderr).toBe('');
    expect(created.code, created.stderr).toBe(0);
    const rollout = json(created);
    expect(rollout).toMatchObject({ fleet: 'lab', group: 'all-sims', artifact: { name: 'detector', version: '1.0.0' } });
    expect(rollout.waves.map((w: { percent: number; approval: string }) => [w.percent, w.approval])).toEqual([
      [50, 'auto'],
      [100, 'manual'],
    ]);

    const waiting = await meshanics(['rollouts', 'watch', rollout.id, '--stop-at-approval', '--timeout', '30s', '--json'], admin);
    expect(waiting.code, waiting.stderr).toBe(0);
    // currentWave is the last wave started; the next one waits.
    expect(json(waiting)).toMatchObject({ status: 'waiting_approval', currentWave: 0 });
    expect(json(waiting).waves.map((w: { status: string; devices: number }) => [w.status, w.devices])).toEqual([
      ['complete', 2],
      ['pending', 2],
    ]);
    expect(json(waiting).waves[0].counts.HEALTHY).toBe(2);

    const denied = await meshanics(['rollouts', 'approve', rollout.id], { MESHANICS_API_URL: server.api, MESHANICS_API_KEY: readerKey });
    expect(denied.code).toBe(3);
    expect(denied.stderr).toContain('missing permission: approve');
    const approved = await meshanics(['rollouts', 'approve', rollout.id, '--json', '--summary'], admin);
    expect(approved.code, approved.stderr).toBe(0);
    expect(json(approved)).toMatchObject({ status: 'running', currentWave: 1 });
    expect(json(approved)).not.toHaveProperty('devices');
    expect((await meshanics(['rollouts', 'approve', rollout.id], admin)).code).toBe(5);

    const watched = await meshanics(['rollouts', 'watch', rollout.id, '--timeout', '30s'], admin);
    expect(watched.stderr).toBe('');
    expect(watched.code, watched.stderr).toBe(0);
    expect(watched.stdout).toMatch(/completed/);
    const show = await meshanics(['rollouts', 'show', rollout.id], admin);
    for (const name of ['sim-1', 'sim-2', 'sim-3', 'sim-4']) expect(show.stdout).toMatch(new RegExp(`${name}\\s+\\d\\s+HEALTHY`));
    expect(show.stdout).toMatch(/status:\s+completed/);
    // --summary: the same rollout without the device list.
    const summary = await meshanics(['rollouts', 'show', rollout.id, '--summary'], admin);
    expect(summary.stdout).toMatch(/status:\s+completed/);
    expect(summary.stdout).not.toMatch(/sim-1/);
    expect(summary.stdout).not.toContain('Devices:');

    // rollouts devices: pages in plan order, of a wave (numbered from 1, as shown) or a state.
    const detail = json(await meshanics(['rollouts', 'show', rollout.id, '--json'], admin));
    const planOrder = detail.devices.map((d: { name: string }) => d.name);
    const first = await meshanics(['rollouts', 'devices', rollout.id, '--limit', '3', '--json'], admin);
    expect(first.code, first.stderr).toBe(0);
    expect(json(first).items.map((d: { name: string }) => d.name)).toEqual(planOrder.slice(0, 3));
    expect(json(first).next).toEqual(expect.any(Number));
    const rest = json(await meshanics(['rollouts', 'devices', rollout.id, '--after', String(json(first).next), '--json'], admin));
    expect(rest).toEqual({ items: [expect.objectContaining({ name: planOrder[3] })], next: null });
    const firstTable = await meshanics(['rollouts', 'devices', rollout.id, '--limit', '1'], admin);
    expect(firstTable.stdout).toMatch(new RegExp(`^DEVICE\\s+WAVE\\s+STATE[^\\n]*\\n${planOrder[0]}\\s+1\\s+HEALTHY`));
    expect(firstTable.stdout).toMatch(/\n\(more: --after \d+, or --all\)\n$/);
    const secondWave = detail.devices.filter((d: { wave: number }) => d.wave === 1).map((d: { name: string }) => d.name);
    const wave2 = await meshanics(['rollouts', 'devices', rollout.id, '--wave', '2'], admin);
    expect(wave2.code, wave2.stderr).toBe(0);
    for (const name of secondWave) expect(wave2.stdout).toMatch(new RegExp(`${name}\\s+2\\s+HEALTHY`));
    expect(wave2.stdout.trim().split('\n')).toHaveLength(1 + secondWave.length);
    // --all follows `next` (here four pages of one).
    const all = json(await meshanics(['rollouts', 'devices', rollout.id, '--state', 'healthy', '--limit', '1', '--all', '--json'], admin));
    expect(all.items.map((d: { name: string }) => d.name)).toEqual(planOrder);
    expect(all.next).toBeNull();
    expect((await meshanics(['rollouts', 'devices', rollout.id, '--state', 'FAILED'], admin)).stdout.trim()).toBe('No devices.');
    const badState = await meshanics(['rollouts', 'devices', rollout.id, '--state', 'broken'], admin);
    expect(badState.code).toBe(2);
    expect(badState.stderr).toContain('--state must be one of PENDING');
    expect((await meshanics(['rollouts', 'devices', rollout.id, '--wave', '0'], admin)).code).toBe(2);
    const ls = await meshanics(['rollouts', 'ls', '--status', 'completed', '--json'], admin);
    expect(json(ls).items.map((r: { id: string }) => r.id)).toContain(rollout.id);
  });

  it('shows the first 100 devices of a larger rollout in a terminal, naming where the rest are; --json has every one', async () => {
    // Devices that never connect: the rollout stays pending, which is all this needs.
    const names = Array.from({ length: 101 }, (_, i) => `wide-${String(i).padStart(3, '0')}`);
    await registerIdleDevices(server.dataDir, 'wide', names);
    const created = await createRollout('wide', 'detector@1.0.0', 'wide', '--devices', names.join(','));
    expect(created.code, created.stderr).toBe(0);
    const id = json(created).id as string;
    const show = await meshanics(['rollouts', 'show', id], admin);
    expect(show.code, show.stderr).toBe(0);
    const rows = show.stdout.split('\n').filter((l) => /^wide-\d{3}\s/.test(l));
    expect(rows).toHaveLength(100);
    const planOrder = json(await meshanics(['rollouts', 'devices', id, '--all', '--json'], admin)).items.map((d: { name: string }) => d.name);
    expect(rows.map((l) => l.split(/\s+/)[0])).toEqual(planOrder.slice(0, 100));
    const footer = /\(the first 100 of 101; the rest: meshanics rollouts devices (\S+) --after (\d+), or --all\)\n$/.exec(show.stdout);
    expect(footer?.[1]).toBe(id);
    const rest = json(await meshanics(['rollouts', 'devices', id, '--after', footer![2]!, '--json'], admin));
    expect(rest).toEqual({ items: [expect.objectContaining({ name: planOrder[100] })], next: null });
    expect(json(await meshanics(['rollouts', 'show', id, '--json'], admin)).devices).toHaveLength(101);
    // Aborted: its pending devices hold nothing the later tests withdraw.
    expect((await meshanics(['rollouts', 'abort', id, '--summary'], admin)).code).toBe(0);
  });

  it('watch exits 7 on a halted rollout with its reason; abort exits watch with 8', async () => {
    const created = await createRollout('lab', 'detector@2.0.0', 'all-sims');
    expect(created.code, created.stderr).toBe(0);
    const id = json(created).id as string;
    const halted = await meshanics(['rollouts', 'watch', id, '--timeout', '30s'], admin);
    expect(halted.code).toBe(7);
    expect(halted.stderr).toContain(`rollout ${id} halted`);
    expect(halted.stdout).toMatch(/halt reason:/);
    expect(halted.stdout).toMatch(/sim-2\s+1\s+ROLLED_BACK\s+.*probe file/);
    const show = json(await meshanics(['rollouts', 'show', id, '--json'], admin));
    expect(show.status).toBe('halted');
    expect(show.halt.reason).toBeTruthy();

    const aborted = await meshanics(['rollouts', 'abort', id, '--policy', 'keep', '--json'], admin);
    expect(aborted.code, aborted.stderr).toBe(0);
    expect(json(aborted)).toMatchObject({ status: 'aborted', abortPolicy: 'keep' });
    const watchAborted = await meshanics(['rollouts', 'watch', id, '--timeout', '10s'], admin);
    expect(watchAborted.code).toBe(8);
    expect((await meshanics(['rollouts', 'resume', id], admin)).code).toBe(5);
    expect((await meshanics(['rollouts', 'abort', id, '--policy', 'sideways'], admin)).code).toBe(2);
    expect((await meshanics(['rollouts', 'show', 'no-such-rollout'], admin)).code).toBe(4);
  });

  it('requests logs, downloads the bundle byte for byte, and a pending bundle is a conflict (5)', async () => {
    const requested = await meshanics(['logs', 'request', 'lab/sim-3', '--max-bytes', '100000', '--json'], admin);
    expect(requested.code, requested.stderr).toBe(0);
    const { id } = json(requested);
    await until('the log bundle', async () => {
      const ls = json(await meshanics(['logs', 'ls', '--fleet', 'lab', '--device', 'sim-3', '--json'], admin));
      return ls.items.find((r: { id: string; status: string }) => r.id === id && r.status === 'fulfilled');
    });
    const out = path.join(root, 'sim-3-logs.gz');
    const dl = await meshanics(['logs', 'download', id, '--out', out, '--json'], admin);
    expect(dl.code, dl.stderr).toBe(0);
    const bundle = await readFile(out);
    expect(json(dl)).toMatchObject({ id, sizeBytes: bundle.length, sha256: createHash('sha256').update(bundle).digest('hex') });
    expect(gunzipSync(bundle).toString('utf8')).toContain('"device":"sim-3"');

    const pending = json(await meshanics(['logs', 'request', 'idle-1', '--fleet', 'lab', '--json'], admin));
    const early = await meshanics(['logs', 'download', pending.id, '--out', path.join(root, 'early.gz')], admin);
    expect(early.code).toBe(5);
    await expect(stat(path.join(root, 'early.gz'))).rejects.toThrow();
  });

  it('withdraws an artifact version nobody holds (0), refuses one devices hold with exit 5 naming them, publishes into a named fleet', async () => {
    const file = path.join(root, 'tool.bin');
    await writeFile(file, randomBytes(1024));
    const published = await meshanics(['artifacts', 'publish', file, '--name', 'lab-tool', '--version', '1.0.0', '--kind', 'model', '--fleet', 'lab', '--json'], admin);
    expect(published.code, published.stderr).toBe(0);
    expect(json(published).fleet).toBe('lab');
    expect((await meshanics(['artifacts', 'ls', '--fleet', 'lab'], admin)).stdout).toMatch(/lab-tool\s+1\.0\.0\s+lab\s+model/);

    const withdrawn = await meshanics(['artifacts', 'withdraw', 'lab-tool@1.0.0'], admin);
    expect(withdrawn.code, withdrawn.stderr).toBe(0);
    expect(withdrawn.stdout).toMatch(/withdrawn:\s+lab-tool@1\.0\.0/);
    expect((await meshanics(['artifacts', 'show', 'lab-tool@1.0.0'], admin)).code).toBe(4);
    expect((await meshanics(['artifacts', 'withdraw', 'lab-tool@1.0.0'], admin)).code).toBe(4);

    // The simulated devices run detector 1.0.0 (the first rollout): held.
    const held = await meshanics(['artifacts', 'withdraw', 'detector@1.0.0'], admin);
    expect(held.code).toBe(5);
    expect(held.stderr).toMatch(/artifact detector@1\.0\.0 is still held by .*device lab\/sim-\d \((assigned|installed)\)/);
    expect((await meshanics(['artifacts', 'show', 'detector@1.0.0'], admin)).code).toBe(0);
    expect((await meshanics(['artifacts', 'withdraw', 'detector'], admin)).code).toBe(2);
  });

  it('audit verify and export exit 0 on an intact chain and 6 once a row was changed behind the server', async () => {
    const ok = await meshanics(['audit', 'verify'], admin);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/chain:\s+verified/);
    const out = path.join(root, 'audit.ndjson');
    const exported = await meshanics(['audit', 'export', '--out', out], admin);
    expect(exported.code, exported.stderr).toBe(0);
    const lines = (await readFile(out, 'utf8')).trim().split('\n');
    expect(JSON.parse(lines.at(-1)!).chain).toMatchObject({ verified: true, count: lines.length - 1 });
    expect(lines.slice(0, -1).map((l) => JSON.parse(l).action)).toEqual(expect.arrayContaining(['artifact.published', 'rollout.created']));
    const events = await meshanics(['audit', 'ls', '--limit', '5'], admin);
    expect(events.stdout).toMatch(/^SEQ\s+WHEN\s+ACTOR\s+ACTION\s+SUBJECT/);

    const db = new Database(path.join(server.dataDir, 'meshanics.db'));
    try {
      db.exec('DROP TRIGGER audit_events_no_update');
      db.prepare("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2").run();
    } finally {
      db.close();
    }
    const broken = await meshanics(['audit', 'verify', '--json'], admin);
    expect(broken.code).toBe(6);
    expect(json(broken)).toMatchObject({ verified: false, firstBrokenSeq: 2 });
    const human = await meshanics(['audit', 'verify'], admin);
    expect(human.code).toBe(6);
    expect(human.stdout).toMatch(/chain:\s+BROKEN/);
    const brokenExport = await meshanics(['audit', 'export'], admin);
    expect(brokenExport.code).toBe(6);
    expect(brokenExport.stderr).toContain('BROKEN at event 2');
    expect(JSON.parse(brokenExport.stdout.trim().split('\n').at(-1)!).chain.verified).toBe(false);
  });
});
