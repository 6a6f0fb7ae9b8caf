// Threshold signing of root and targets end to end with real processes: a running `serve` and
// two real agents enrolled while every TUF key was online (root v1, 1 of 1). Six holders each
// create one key on their own machine (a directory here): A, B, C for root, T1, T2, T3 for
// targets. `tuf sign-root` writes root v2 naming them 2 of 3 per role, unsigned; the holders add
// their signatures with `tuf sign` (in turn) and `tuf merge-signatures` (in parallel). `tuf
// import` refuses a file with 1 of the 2 signatures, naming the missing key ids, and counts the
// same key twice once; with 2 of 3 it installs, and both agents follow the threshold change
// 1-of-1 -> 2-of-3 (TUF spec 5.3.4) and take an update. Then C is replaced by D: root v3
// needs 2 of the current A, B, C as well as 2 of its own A, B, D; the agents follow again.
import { execFile } from 'node:child_process';
import * as crypto from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVER_CLI, serverCli, startAgent, waitForAssignment, type Child } from '../../scripts/lib/processes.mjs';
import { publishModel, startServerWithAgent } from './helpers/steps.js';

const execFileP = promisify(execFile);

let root: string;
let serverDir: string;
let server: Child;
const agents: { name: string; dir: string; child: Child }[] = [];
const holders: Record<string, { keyid: string; privateKeyFile: string; publicKeyFile: string }> = {};
let transfer: string;

const metadataDir = () => path.join(serverDir, 'tuf', 'repo', 'metadata');
const id = (h: string) => holders[h]!.keyid;
const pub = (h: string) => holders[h]!.publicKeyFile;
const key = (h: string) => holders[h]!.privateKeyFile;
const file = (name: string) => path.join(transfer, name);

/** A command that must be refused: its exit status and stderr. */
async function refused(args: string[]): Promise<{ status: number; stderr: string }> {
  try {
    await execFileP(process.execPath, [SERVER_CLI, ...args, '--data-dir', serverDir]);
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { status: e.code, stderr: e.stderr };
  }
  throw new Error(`meshanics-server ${args.join(' ')} succeeded`);
}

async function installedEverywhere(version: string): Promise<void> {
  await publishModel(serverDir, root, { name: 'detector', version }, crypto.randomBytes(48 * 1024));
  const ready = path.join(root, 'ready', version);
  await writeFile(ready, 'ok');
  const ids: string[] = [];
  for (const a of agents) {
    const args = ['assign', '--fleet', 'e2e', '--device', a.name, '--artifact', `detector@${version}`, '--probe-type', 'file', '--probe-spec', JSON.stringify({ path: ready })];
    ids.push((await serverCli(serverDir, [...args, '--probe-timeout', '1', '--probe-attempts', '1'])).assignmentId as string);
  }
  for (const [i, assignmentId] of ids.entries()) {
    const view = await waitForAssignment(serverDir, assignmentId);
    expect(view.state, `${agents[i]!.name}: ${view.reason}`).toBe('HEALTHY');
  }
}

function trustedRoot(agentDir: string): { version: number; threshold: number } {
  const json = JSON.parse(readFileSync(path.join(agentDir, 'tuf', 'root.json'), 'utf8')) as { signed: { version: number; roles: { root: { threshold: number } } } };
  return { version: json.signed.version, threshold: json.signed.roles.root.threshold };
}

async function metadataFiles(): Promise<string[]> {
  return (await readdir(metadataDir())).sort();
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-e2e-tuf-threshold-'));
  serverDir = path.join(root, 'server');
  transfer = path.join(root, 'transfer');
  await mkdir(path.join(root, 'ready'), { recursive: true });
  await mkdir(transfer, { recursive: true });
  const first = await startServerWithAgent({ serverDir, certDir: path.join(root, 'creds-1'), agentDir: path.join(root, 'agent-1') });
  server = first.server;
  agents.push({ name: 'edge-1', dir: path.join(root, 'agent-1'), child: first.agent });
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'e2e', '--name', 'edge-2', '--out', path.join(root, 'creds-2')]);
  const second = startAgent(server, path.join(root, 'creds-2'), path.join(root, 'agent-2'));
  await second.waitForLine((l) => l?.msg === 'registered');
  agents.push({ name: 'edge-2', dir: path.join(root, 'agent-2'), child: second });
});

afterAll(async () => {
  for (const a of agents) await a.child.stop();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('2-of-3 root and targets keys under a running server and two real agents', () => {
  it('agents enrolled under root v1 (1 of 1, online) install 1.0.0; each holder creates a key on their own machine', async () => {
    await installedEverywhere('1.0.0');
    for (const a of agents) expect(trustedRoot(a.dir)).toEqual({ version: 1, threshold: 1 });
    for (const h of ['A', 'B', 'C', 'D']) holders[h] = await serverCli(serverDir, ['tuf', 'keygen', '--role', 'root', '--out', path.join(root, `holder-${h}`)]);
    for (const h of ['T1', 'T2', 'T3']) holders[h] = await serverCli(serverDir, ['tuf', 'keygen', '--role', 'targets', '--out', path.join(root, `holder-${h}`)]);
  });

  it('sign-root / sign-targets write unsigned 2-of-3 metadata; a holder signing twice leaves one signature', async () => {
    await serverCli(serverDir, ['tuf', 'online-keys', '--out', file('online-keys-2.json')]);
    const r = await serverCli(serverDir, [
      'tuf',
      'sign-root',
      '--online-keys',
      file('online-keys-2.json'),
      ...['A', 'B', 'C'].flatMap((h) => ['--root-key', pub(h)]),
      ...['T1', 'T2', 'T3'].flatMap((h) => ['--targets-key', pub(h)]),
      '--threshold',
      '2',
      '--out',
      file('root-2.json'),
    ]);
    expect(r).toMatchObject({ version: 2, thresholds: { root: 2, targets: 2 }, signedBy: [], keyids: { root: [id('A'), id('B'), id('C')] } });
    const tg = await serverCli(serverDir, ['tuf', 'sign-targets', '--online-keys', file('online-keys-2.json'), '--root', file('root-2.json'), '--out', file('targets-2.json')]);
    expect(tg).toMatchObject({ version: 2, signedBy: [], status: { threshold: 2, missing: [id('T1'), id('T2'), id('T3')] } });

    const a1 = await serverCli(serverDir, ['tuf', 'sign', '--key', key('A'), '--in', file('root-2.json')]);
    expect(a1).toMatchObject({ keyid: id('A'), alreadySigned: false, signatures: [id('A')] });
    const a2 = await serverCli(serverDir, ['tuf', 'sign', '--key', key('A'), '--in', file('root-2.json')]);
    expect(a2).toMatchObject({ alreadySigned: true, signatures: [id('A')], thresholds: [{ signedBy: [id('A')], missing: [id('B'), id('C')], met: false }] });
    await serverCli(serverDir, ['tuf', 'sign', '--key', key('T1'), '--in', file('targets-2.json'), '--root', file('root-2.json')]);
  });

  it('tuf import refuses root with 1 of 2 signatures (A signed twice counts once), naming B and C, exit 1, nothing changed', async () => {
    const before = await metadataFiles();
    const versions = (await serverCli(serverDir, ['tuf', 'status'])).versions;
    const r = await refused(['tuf', 'import', '--root', file('root-2.json'), '--targets', file('targets-2.json')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('MESH_ERR_TUF_IMPORT_SIGNATURE: root v2 is not signed by a threshold of its own root keys (spec 5.3.4 (2)): 1 of the 2 valid signatures needed');
    expect(r.stderr).toContain(`missing [${id('B')}, ${id('C')}]`);
    expect(await metadataFiles()).toEqual(before);
    expect((await serverCli(serverDir, ['tuf', 'status'])).versions).toEqual(versions);
  });

  it('B signs a copy in parallel and the copies are merged; T2 signs targets in turn; import installs 2-of-3 and retires the online keys', async () => {
    await copyFile(file('root-2.json'), file('root-2-B.json'));
    await serverCli(serverDir, ['tuf', 'sign', '--key', key('B'), '--in', file('root-2-B.json')]);
    const merged = await serverCli(serverDir, ['tuf', 'merge-signatures', '--out', file('root-2-signed.json'), file('root-2.json'), file('root-2-B.json')]);
    expect(merged.thresholds[0]).toMatchObject({ met: true, signedBy: [id('A'), id('B')] });
    // Targets 1 of 2: refused with the targets key ids missing.
    const short = await refused(['tuf', 'import', '--root', file('root-2-signed.json'), '--targets', file('targets-2.json')]);
    expect(short.stderr).toContain(`MESH_ERR_TUF_IMPORT_SIGNATURE: targets v2`);
    expect(short.stderr).toContain(`missing [${id('T2')}, ${id('T3')}]`);
    await serverCli(serverDir, ['tuf', 'sign', '--key', key('T2'), '--in', file('targets-2.json'), '--root', file('root-2-signed.json')]);
    const imported = await serverCli(serverDir, ['tuf', 'import', '--root', file('root-2-signed.json'), '--targets', file('targets-2.json')]);
    expect(imported.root).toMatchObject({ version: 2, thresholds: { root: 2, targets: 2 }, signedBy: [id('A'), id('B')], addedCurrentRootSignature: true });
    expect(imported.targets).toMatchObject({ version: 2, signedBy: [id('T1'), id('T2')] });
    expect(imported.removedOnlineKeys).toEqual(['root', 'targets']);
    expect(existsSync(path.join(serverDir, 'tuf', 'keys', 'root.pem'))).toBe(false);
    const status = await serverCli(serverDir, ['tuf', 'status']);
    expect(status.thresholds).toEqual({ root: { threshold: 2, keyids: [id('A'), id('B'), id('C')] }, targets: { threshold: 2, keyids: [id('T1'), id('T2'), id('T3')] } });
  });

  it('both running agents follow root v1 (1 of 1) -> v2 (2 of 3) and install 2.0.0', async () => {
    await installedEverywhere('2.0.0');
    for (const a of agents) expect(trustedRoot(a.dir)).toEqual({ version: 2, threshold: 2 });
  });

  it('root v3 (C replaced by D) needs 2 of the current A, B, C too (spec 5.3.4): refused with A and D, installed once B signs; agents follow and install 3.0.0', async () => {
    await serverCli(serverDir, ['tuf', 'online-keys', '--out', file('online-keys-3.json')]);
    await serverCli(serverDir, [
      'tuf',
      'sign-root',
      '--online-keys',
      file('online-keys-3.json'),
      ...['A', 'B', 'D'].flatMap((h) => ['--root-key', pub(h)]),
      ...['T1', 'T2', 'T3'].flatMap((h) => ['--targets-key', pub(h)]),
      '--threshold',
      '2',
      '--sign-key',
      key('A'),
      '--sign-key',
      key('D'),
      '--out',
      file('root-3.json'),
    ]);
    const r = await refused(['tuf', 'import', '--root', file('root-3.json')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE: root v3 is not signed by a threshold of the current root v2 keys (spec 5.3.4 (1))');
    expect(r.stderr).toContain(`signed by [${id('A')}]; missing [${id('B')}, ${id('C')}]`);
    await serverCli(serverDir, ['tuf', 'sign', '--key', key('B'), '--in', file('root-3.json'), '--root', path.join(metadataDir(), 'root.json')]);
    const imported = await serverCli(serverDir, ['tuf', 'import', '--root', file('root-3.json')]);
    expect(imported.root).toMatchObject({ version: 3, signedByCurrentRoot: [id('A'), id('B')], addedCurrentRootSignature: false });
    await installedEverywhere('3.0.0');
    for (const a of agents) expect(trustedRoot(a.dir)).toEqual({ version: 3, threshold: 2 });
  });
});
