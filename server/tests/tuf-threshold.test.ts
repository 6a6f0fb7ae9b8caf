// Threshold signing of the offline roles in-process: `sign-root` naming n keys with a threshold
// k, holders adding their signatures (`tuf sign`, in turn or in parallel then
// `merge-signatures`), and `tuf import` counting valid signatures from distinct keys against
// both the current and the new root (TUF spec 5.3.4), naming the key ids still missing and
// changing nothing on a refusal. The process-level story with real agents is
// tests/e2e/tuf-threshold.test.ts.
import * as crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Key, Metadata, MetadataKind } from '@tufjs/models';
import { Updater } from 'tuf-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../src/catalog/publish.js';
import { openDataDir, type MeshanicsContext } from '../src/config/data-dir.js';
import type { DeviceCredentials } from '../src/fleet/devices.js';
import { isTufError, type TufErrorCode } from '../src/tuf/index.js';
import { loadKeyFile, signMetadata } from '../src/tuf/keys.js';
import { keygen, mergeSignatures, signFile, signRoot, signTargets, type KeygenResult } from '../src/tuf/offline.js';
import { thresholdStatus } from '../src/tuf/threshold.js';
import { provision, startTestServer, tempDir, type TestServer } from './helpers.js';
import { artifactFile, clientPinnedToV1 as pinnedClient, expectRefusedUnchanged, importSignedFiles } from './helpers/tuf.js';

const SERVER_CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

let t: TestServer;
let device: DeviceCredentials;
let importer: MeshanicsContext;
let transfer: string;
/** One directory per holder, as each holder's own machine. */
const holders: Record<string, KeygenResult> = {};

function holder(name: string, role: 'root' | 'targets'): KeygenResult {
  holders[name] ??= keygen(role, tempDir(`meshanics-holder-${name}-`));
  return holders[name];
}
const id = (name: string) => holders[name]!.keyid;

async function expectRefused(code: TufErrorCode, fn: () => unknown): Promise<{ message: string; details: Record<string, unknown> }> {
  const caught = await expectRefusedUnchanged(importer, isTufError, code, fn);
  return { message: caught.message, details: caught.details ?? {} };
}

const importFiles = (files: { root?: string; targets?: string }) => importSignedFiles(importer, files);

/** tuf-js as the agent runs it, trusting only the root v1 the device was enrolled with; `trustedRoot` is the root it trusts now. */
async function clientPinnedToV1(): Promise<{ updater: Updater; trustedRoot: () => Metadata<never> }> {
  const { updater, metadataDir } = await pinnedClient(t, device);
  return { updater, trustedRoot: () => JSON.parse(fs.readFileSync(path.join(metadataDir, 'root.json'), 'utf8')) as Metadata<never> };
}

async function onlineKeys(name: string): Promise<string> {
  const file = path.join(transfer, name);
  fs.writeFileSync(file, JSON.stringify(await t.ctx.tuf.onlineKeys()));
  return file;
}

const pub = (name: string) => holders[name]!.publicKeyFile;
const pem = (name: string) => holders[name]!.privateKeyFile;

beforeAll(async () => {
  t = await startTestServer();
  device = await provision(t.ctx, 'lab', 'threshold-1');
  importer = await openDataDir({ dataDir: t.dataDir, ...t.database });
  transfer = tempDir('meshanics-transfer-');
  for (const n of ['A', 'B', 'C', 'D']) holder(n, 'root');
  for (const n of ['T1', 'T2', 'T3']) holder(n, 'targets');
  await publishArtifact(t.ctx, { file: artifactFile(crypto.randomBytes(1024)), name: 'detector', version: '1.0.0', kind: 'model' });
});
afterAll(async () => {
  await importer?.close();
  await t.close();
});

describe('sign-root names n keys per offline role with a threshold k', () => {
  it('writes an unsigned root naming every key with its threshold; refuses k > n and a key given twice', async () => {
    const keys = await onlineKeys('online-keys-0.json');
    const out = path.join(transfer, 'root-unsigned.json');
    const r = signRoot({
      rootKeyFiles: [pub('A'), pub('B'), pub('C')],
      targetsKeyFiles: [pub('T1'), pub('T2'), pub('T3')],
      rootThreshold: 2,
      targetsThreshold: 2,
      onlineKeysFile: keys,
      out,
    });
    expect(r.keyids.root).toEqual([id('A'), id('B'), id('C')]);
    expect(r.thresholds).toEqual({ root: 2, targets: 2 });
    expect(r.signedBy).toEqual([]);
    expect(r.status).toMatchObject({ threshold: 2, signedBy: [], missing: [id('A'), id('B'), id('C')], met: false });
    const md = Metadata.fromJSON(MetadataKind.Root, JSON.parse(fs.readFileSync(out, 'utf8')));
    expect(md.signed.roles.root).toMatchObject({ keyIDs: [id('A'), id('B'), id('C')], threshold: 2 });
    expect(md.signed.roles.targets).toMatchObject({ keyIDs: [id('T1'), id('T2'), id('T3')], threshold: 2 });
    expect(md.signed.roles.snapshot!.threshold).toBe(1);
    expect(() => signRoot({ rootKeyFiles: [pub('A'), pub('B')], targetsKeyFiles: [pub('T1')], rootThreshold: 3, onlineKeysFile: keys, out })).toThrowError(
      /root threshold 3 must be an integer from 1 to the 2 root key\(s\) given/,
    );
    expect(() => signRoot({ rootKeyFiles: [pub('A'), pem('A')], targetsKeyFiles: [pub('T1')], rootThreshold: 2, onlineKeysFile: keys, out })).toThrowError(/given twice/);
  });
});

describe('1-of-1 (embedded default) -> 2-of-3 root and 2-of-3 targets', () => {
  let root2: string;
  let targets2: string;
  beforeAll(async () => {
    const keys = await onlineKeys('online-keys-2.json');
    root2 = path.join(transfer, 'root-2.json');
    targets2 = path.join(transfer, 'targets-2.json');
    signRoot({
      rootKeyFiles: [pub('A'), pub('B'), pub('C')],
      targetsKeyFiles: [pub('T1'), pub('T2'), pub('T3')],
      rootThreshold: 2,
      targetsThreshold: 2,
      onlineKeysFile: keys,
      out: root2,
    });
    signTargets({ onlineKeysFile: keys, rootFile: root2, out: targets2 });
  });

  it('tuf sign adds one signature per holder, and is idempotent for the same key', () => {
    const first = signFile({ keyFile: pem('A'), inFile: root2 });
    expect(first).toMatchObject({ keyid: id('A'), alreadySigned: false, signatures: [id('A')] });
    expect(first.thresholds).toEqual([expect.objectContaining({ delegator: 'root v2', threshold: 2, signedBy: [id('A')], missing: [id('B'), id('C')], met: false })]);
    const bytes = fs.readFileSync(root2);
    const again = signFile({ keyFile: pem('A'), inFile: root2 });
    expect(again).toMatchObject({ alreadySigned: true, signatures: [id('A')] });
    expect(fs.readFileSync(root2)).toEqual(bytes);
    const t1 = signFile({ keyFile: pem('T1'), inFile: targets2, rootFile: root2 });
    expect(t1.thresholds).toEqual([expect.objectContaining({ role: 'targets', signedBy: [id('T1')], missing: [id('T2'), id('T3')] })]);
    // A root key on a root that does not list it, with no current root to vouch for it.
    expect(() => signFile({ keyFile: pem('D'), inFile: root2, out: path.join(transfer, 'x.json') })).toThrowError(/does not list root key .*give that root with --root FILE/);
    expect(() => signFile({ keyFile: pem('A'), inFile: targets2, rootFile: root2, out: path.join(transfer, 'x.json') })).toThrowError(/does not list targets key/);
  });

  it('refuses a root with 1 of the 2 signatures it needs, naming the missing key ids', async () => {
    const { message, details } = await expectRefused('MESH_ERR_TUF_IMPORT_SIGNATURE', () => importFiles({ root: root2, targets: targets2 }));
    expect(message).toBe(
      `root v2 is not signed by a threshold of its own root keys (spec 5.3.4 (2)): 1 of the 2 valid signatures needed from distinct root keys of root v2: signed by [${id('A')}]; missing [${id('B')}, ${id('C')}]`,
    );
    expect(details).toMatchObject({ role: 'root', threshold: 2, signedBy: [id('A')], missing: [id('B'), id('C')], met: false });
  });

  it('the same key twice counts once: a repeated signature, or one key listed under a second key id', async () => {
    const json = JSON.parse(fs.readFileSync(root2, 'utf8')) as { signatures: unknown[]; signed: Record<string, unknown> };
    const repeated = path.join(transfer, 'root-2-repeated.json');
    fs.writeFileSync(repeated, JSON.stringify({ ...json, signatures: [json.signatures[0], json.signatures[0]] }));
    const r1 = await expectRefused('MESH_ERR_TUF_IMPORT_SIGNATURE', () => importFiles({ root: repeated, targets: targets2 }));
    expect(r1.details).toMatchObject({ signedBy: [id('A')], missing: [id('B'), id('C')] });

    // A root listing A's public key a second time under another id, threshold 2, signed "twice" by A:
    // tufjs's verifyDelegate counts key ids and would accept it.
    const md = Metadata.fromJSON(MetadataKind.Root, JSON.parse(fs.readFileSync(root2, 'utf8')));
    const a = loadKeyFile(pem('A'), 'root');
    const alias = Key.fromJSON('a'.repeat(64), a.key.toJSON());
    const signedJson = md.signed.toJSON() as { keys: Record<string, unknown>; roles: { root: { keyids: string[]; threshold: number } } };
    signedJson.keys[alias.keyID] = alias.toJSON();
    signedJson.roles.root = { keyids: [id('A'), alias.keyID], threshold: 2 };
    const forged = Metadata.fromJSON(MetadataKind.Root, { signed: signedJson, signatures: [] } as never);
    signMetadata(forged, a, true);
    signMetadata(forged, { ...a, key: alias }, true);
    expect(() => forged.verifyDelegate('root', forged)).not.toThrow();
    const forgedFile = path.join(transfer, 'root-2-alias.json');
    fs.writeFileSync(forgedFile, JSON.stringify(forged.toJSON()));
    // Counted once (tuf-key-aliases.test.ts), and refused before counting: agents' tufjs counts key ids.
    expect(thresholdStatus(forged, 'root', forged)).toMatchObject({ threshold: 2, signedBy: [id('A')], missing: [alias.keyID] });
    const r2 = await expectRefused('MESH_ERR_TUF_IMPORT_INVALID', () => importFiles({ root: forgedFile, targets: targets2 }));
    expect(r2.message).toContain(`lists root key ${alias.keyID}, the same public key as ${id('A')}`);

    // Two different signatures under one key id make a file ambiguous.
    const sig = json.signatures[0] as { keyid: string; sig: string };
    const ambiguous = path.join(transfer, 'root-2-ambiguous.json');
    fs.writeFileSync(ambiguous, JSON.stringify({ ...json, signatures: [sig, { keyid: sig.keyid, sig: '00'.repeat(64) }] }));
    const r3 = await expectRefused('MESH_ERR_TUF_IMPORT_INVALID', () => importFiles({ root: ambiguous, targets: targets2 }));
    expect(r3.message).toContain(`holds two different signatures by key ${id('A')}`);
  });

  it('merge-signatures collects copies signed in parallel; refuses copies of different content', async () => {
    const copyB = path.join(transfer, 'root-2-B.json');
    signFile({ keyFile: pem('B'), inFile: root2, out: copyB });
    // B signed a copy of the file A had already signed: the merge keeps A's signature once.
    expect(JSON.parse(fs.readFileSync(copyB, 'utf8')).signatures).toHaveLength(2);
    const unsignedB = path.join(transfer, 'root-2-B-only.json');
    const json = JSON.parse(fs.readFileSync(root2, 'utf8'));
    fs.writeFileSync(
      unsignedB,
      JSON.stringify({ ...json, signatures: JSON.parse(fs.readFileSync(copyB, 'utf8')).signatures.filter((s: { keyid: string }) => s.keyid === id('B')) }),
    );
    const merged = path.join(transfer, 'root-2-merged.json');
    const m = mergeSignatures({ inFiles: [root2, unsignedB, copyB], out: merged });
    expect(m.signatures.sort()).toEqual([id('A'), id('B')].sort());
    expect(m.thresholds[0]).toMatchObject({ met: true, missing: [id('C')] });

    const other = path.join(transfer, 'root-2-other.json');
    fs.writeFileSync(other, JSON.stringify({ ...json, signed: { ...json.signed, expires: '2099-01-01T00:00:00Z' } }));
    let caught: unknown;
    try {
      mergeSignatures({ inFiles: [merged, other], out: path.join(transfer, 'never.json') });
    } catch (err) {
      caught = err;
    }
    expect(isTufError(caught, 'MESH_ERR_TUF_MERGE_MISMATCH')).toBe(true);
    expect(fs.existsSync(path.join(transfer, 'never.json'))).toBe(false);
    fs.copyFileSync(merged, root2);
  });

  it('refuses targets with 1 of the 2 signatures the new root needs; with 2 (signed in turn) installs both, and a client pinned to v1 follows', async () => {
    const { message } = await expectRefused('MESH_ERR_TUF_IMPORT_SIGNATURE', () => importFiles({ root: root2, targets: targets2 }));
    expect(message).toMatch(new RegExp(`^targets v2 .*1 of the 2 valid signatures .*missing \\[${id('T2')}, ${id('T3')}\\]$`));
    signFile({ keyFile: pem('T3'), inFile: targets2, rootFile: root2 });
    const result = await importFiles({ root: root2, targets: targets2 });
    expect(result.root).toMatchObject({
      version: 2,
      thresholds: { root: 2, targets: 2 },
      signedBy: [id('A'), id('B')],
      addedCurrentRootSignature: true,
    });
    expect(result.targets).toMatchObject({ version: 2, signedBy: [id('T1'), id('T3')] });
    expect(result.removedOnlineKeys).toEqual(['root', 'targets']);
    const published = await publishArtifact(t.ctx, { file: artifactFile(crypto.randomBytes(2048)), name: 'detector', version: '2.0.0', kind: 'model' });
    const { updater, trustedRoot } = await clientPinnedToV1();
    expect((trustedRoot() as unknown as { signed: { version: number } }).signed.version).toBe(2);
    expect((await updater.getTargetInfo(published.targetPath))?.hashes.sha256).toBe(published.sha256);
  });
});

describe('2-of-3 -> 2-of-3 with a holder replaced (C out, D in): both thresholds (spec 5.3.4)', () => {
  it('refuses a root meeting only its own threshold, naming the current root keys missing; accepts it once B signs', async () => {
    const keys = await onlineKeys('online-keys-3.json');
    const root3 = path.join(transfer, 'root-3.json');
    const current = path.join(importer.layout.tufMetadataDir, 'root.json');
    signRoot({
      rootKeyFiles: [pub('A'), pub('B'), pub('D')],
      targetsKeyFiles: [pub('T1'), pub('T2'), pub('T3')],
      rootThreshold: 2,
      targetsThreshold: 2,
      signKeyFiles: [pem('A'), pem('D')],
      onlineKeysFile: keys,
      out: root3,
    });
    const { message, details } = await expectRefused('MESH_ERR_TUF_IMPORT_OLD_ROOT_SIGNATURE', () => importFiles({ root: root3 }));
    expect(message).toContain(`1 of the 2 valid signatures needed from distinct root keys of root v2: signed by [${id('A')}]; missing [${id('B')}, ${id('C')}]`);
    expect(details).toMatchObject({ delegator: 'root v2', missing: [id('B'), id('C')] });
    // C, rotated out, can still sign for the old threshold when given the current root.
    const withC = path.join(transfer, 'root-3-C.json');
    expect(signFile({ keyFile: pem('C'), inFile: root3, out: withC, rootFile: current }).thresholds.map((s) => s.met)).toEqual([true, true]);
    signFile({ keyFile: pem('B'), inFile: root3, rootFile: current });
    const result = await importFiles({ root: root3 });
    expect(result.root).toMatchObject({ version: 3, signedBy: [id('A'), id('B'), id('D')], signedByCurrentRoot: [id('A'), id('B')], addedCurrentRootSignature: false });
    const { trustedRoot } = await clientPinnedToV1();
    expect((trustedRoot() as unknown as { signed: { version: number } }).signed.version).toBe(3);
  });
});

describe('meshanics-server tuf sign / merge-signatures CLI', () => {
  it('answers --help', () => {
    for (const sub of ['sign', 'merge-signatures']) {
      const out = execFileSync(process.execPath, [SERVER_CLI, 'tuf', sub, '--help'], { encoding: 'utf8' });
      expect(out).toContain(`Usage: meshanics-server tuf ${sub}`);
    }
  });
});
