// TUF attacks with metadata the tests craft. The repository is the real server's (a running
// `meshanics-server serve`), and the attacks are files written straight into the directory
// its artifact HTTPS server serves: metadata built with @tufjs/models and signed with the
// server's own role keys from <data-dir>/tuf/keys (an attacker who stole one), with keys the
// attacker made up, or genuine older files replayed. The device side runs in this process:
// core's TufTargetSource (tuf-js over mTLS, with a certificate from `device issue-cert`) and
// the real pipeline with the real model plugin, exactly what `meshanics-agent run` builds
// minus the gRPC daemon (tests/faults/fixtures/device.mjs).
//
// Every attack starts from a device that trusts the current repository and runs v1. Each one
// must end FAILED with its specific reason, leave v1 live and untouched, keep the device's
// trusted metadata at the genuine versions, and leave nothing in staging. Once the genuine
// files are back, the same device installs the update: no attack bricks it. A root rotation
// signed by the old and the new root keys must be followed; one the old root did not sign
// must not.
import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPipeline, type Assignment } from '@meshanics/core';
import { openDataDir, publishArtifact, type MeshanicsContext, type PublishedArtifact } from '@meshanics/server';
import { serverCli, startServer, type Child } from '../../scripts/lib/processes.mjs';
import { openDevice } from './fixtures/device.mjs';
import { recordResults, sha256 } from './fixtures/fault-lib.mjs';
import { Metadata, MetadataKind, ServedRepo, isoIn, loadKey, sign } from './fixtures/tuf-craft.mjs';

let root: string;
let serverDir: string;
let certDir: string;
let server: Child;
let ctx: MeshanicsContext;
let repo: ServedRepo;
let v1: PublishedArtifact;
const v1Bytes = randomBytes(32 * 1024);
const rows: Array<Record<string, unknown>> = [];
let published = 0;
let assignmentCounter = 0;

async function publish(bytes = randomBytes(48 * 1024), version = `2.${++published}.0`): Promise<PublishedArtifact & { bytes: Buffer }> {
  const file = path.join(root, `detector-${version}`);
  await writeFile(file, bytes);
  return { ...(await publishArtifact(ctx, { file, name: 'detector', version, kind: 'model', actor: 'test:faults' })), bytes };
}

function assignmentFor(p: Pick<PublishedArtifact, 'version' | 'targetPath' | 'sha256' | 'length'>, extra: Partial<Assignment> = {}): Assignment {
  assignmentCounter += 1;
  return {
    assignmentId: `tuf-attack-${assignmentCounter}`,
    rolloutId: '',
    kind: 'model',
    name: 'detector',
    version: p.version,
    targetPath: p.targetPath,
    expectedSha256: p.sha256,
    expectedLength: p.length,
    specJson: '{}',
    probe: { type: 'file', specJson: JSON.stringify({ path: path.join(root, 'ready') }), timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    ...extra,
  };
}

/** A device that trusts the repository as it is now and runs v1. */
async function freshDevice(label: string) {
  const dataDir = path.join(root, 'devices', label);
  const device = await openDevice({ dataDir, certDir, artifactServer: server.artifacts });
  const state = await runPipeline(device.agent, assignmentFor(v1), new AbortController().signal);
  expect(state).toBe('HEALTHY');
  return { ...device, dataDir };
}

type Device = Awaited<ReturnType<typeof freshDevice>>;

function liveBytes(device: Device): Promise<Buffer> {
  return readFile(path.join(device.dataDir, 'artifacts', 'model', 'detector', 'model'));
}

function trustedVersion(device: Device, role: string): number {
  return JSON.parse(readFileSync(path.join(device.dataDir, 'tuf', `${role}.json`), 'utf8')).signed.version;
}

/**
 * Runs `assignment` on `device` under attack; asserts FAILED with `reason`, nothing applied,
 * no staging left, trusted metadata not advanced past `genuine`. Metadata the attacker signed
 * with a REAL (stolen) role key is valid TUF metadata and may be trusted (`stolen`: those
 * roles): only what it points to must be refused. Returns the reason.
 */
async function expectRefused(attack: string, device: Device, assignment: Assignment, reason: RegExp, genuine = repo.current().versions, { stolen = [] as string[] } = {}) {
  const state = await runPipeline(device.agent, assignment, new AbortController().signal);
  const reports = device.agent.state.current.outbox.filter((r) => r.assignmentId === assignment.assignmentId);
  const last = reports.at(-1);
  const trusted = {
    timestamp: trustedVersion(device, 'timestamp'),
    snapshot: trustedVersion(device, 'snapshot'),
    targets: trustedVersion(device, 'targets'),
    publisher: existsSync(path.join(device.dataDir, 'tuf', 'publisher.json')) ? trustedVersion(device, 'publisher') : undefined,
  };
  rows.push({ attack, result: state, reason: last?.reason, states: reports.map((r) => r.state).join(' ') });
  expect(state, last?.reason).toBe('FAILED');
  expect(last?.state).toBe('FAILED');
  expect(last?.reason).toMatch(reason);
  // Nothing was applied: no APPLYING, the old bytes live, no leftovers, no new trusted metadata.
  expect(reports.map((r) => r.state)).not.toContain('APPLYING');
  expect(sha256(await liveBytes(device))).toBe(sha256(v1Bytes));
  expect(await readdir(path.join(device.dataDir, 'staging')).catch(() => [])).toEqual([]);
  expect(device.agent.state.current.installed.detector?.version).toBe(v1.version);
  if (!stolen.includes('timestamp')) expect(trusted.timestamp).toBeLessThanOrEqual(genuine.timestamp);
  if (!stolen.includes('snapshot')) expect(trusted.snapshot).toBeLessThanOrEqual(genuine.snapshot);
  rows.at(-1)!.trustedAfter = trusted;
  expect(trusted.targets).toBeLessThanOrEqual(genuine.targets);
  if (trusted.publisher !== undefined && genuine.publisher !== undefined) expect(trusted.publisher).toBeLessThanOrEqual(genuine.publisher);
  return last!.reason;
}

/**
 * With the genuine repository back, the same device takes the update: the attack left no harm.
 * If it trusted a timestamp signed with the stolen key (a fast-forward), the repository has to
 * move past that version first (TUF spec 5.4.3.1); the publishes that takes are recorded.
 */
async function expectRecovers(device: Device, target: PublishedArtifact & { bytes: Buffer }) {
  let bumps = 0;
  const passed = () => {
    const v = repo.current().versions;
    const same = readFileSync(path.join(device.dataDir, 'tuf', 'timestamp.json')).equals(repo.bytes('timestamp.json'));
    return same || (v.timestamp > trustedVersion(device, 'timestamp') && v.snapshot >= trustedVersion(device, 'snapshot'));
  };
  // Likewise for a bin whose version a stolen-key snapshot fast-forwarded: only a publish into
  // that bin moves it (each publish re-signs one bin), so the bump is aimed at it.
  const laggingBin = () => {
    const trusted = JSON.parse(readFileSync(path.join(device.dataDir, 'tuf', 'snapshot.json'), 'utf8')).signed.meta as Record<string, { version: number }>;
    const served = repo.current().snapshot.signed.meta;
    return Object.keys(trusted)
      .find((f) => f.startsWith('publisher-bin-') && (served[f]?.version ?? 0) < trusted[f]!.version)
      ?.replace(/\.json$/, '');
  };
  for (let bin = laggingBin(); !passed() || bin !== undefined; bin = laggingBin()) {
    let version = `0.0.${++published}`;
    while (bin !== undefined && repo.binOf(`detector/${version}/detector`).role !== bin) version = `0.0.${++published}`;
    await publish(randomBytes(1024), version);
    bumps += 1;
  }
  const state = await runPipeline(device.agent, assignmentFor(target), new AbortController().signal);
  expect(state, device.agent.state.current.outbox.at(-1)?.reason).toBe('HEALTHY');
  expect(sha256(await liveBytes(device))).toBe(target.sha256);
  rows.at(-1)!.recovered = bumps === 0 ? true : `after the repository passed the stolen-key timestamp (${bumps} publish${bumps > 1 ? 'es' : ''})`;
}

/** Runs `body` with the served metadata restored afterwards, whatever happens. */
async function underAttack<T>(body: () => Promise<T>): Promise<T> {
  const saved = repo.snapshotFiles();
  try {
    return await body();
  } finally {
    repo.restore(saved);
  }
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-tuf-'));
  serverDir = path.join(root, 'server');
  certDir = path.join(root, 'creds');
  await writeFile(path.join(root, 'ready'), 'ok');
  server = await startServer(serverDir);
  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'faults', '--name', 'tuf-device', '--out', certDir]);
  ctx = await openDataDir({ dataDir: serverDir });
  repo = new ServedRepo(serverDir);
  v1 = await publish(v1Bytes, '1.0.0');
}, 60_000);

afterAll(async () => {
  recordResults('tuf-attacks', { attacks: rows });
  await ctx?.close();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('TUF attacks against a device (real repository, crafted metadata)', () => {
  it('arbitrary target: bytes swapped on the server under a signed name fail the hash check', async () => {
    const v2 = await publish();
    const device = await freshDevice('arbitrary');
    const stored = path.join(repo.targetsDir, 'detector', v2.version, `${v2.sha256}.detector`);
    const evil = Buffer.from(v2.bytes);
    evil[100] = evil[100]! ^ 0xff;
    await writeFile(stored, evil);
    try {
      await expectRefused(
        'arbitrary target (same length, other bytes)',
        device,
        assignmentFor(v2),
        /^MESH_ERR_DIGEST_MISMATCH: detector\/2\.\d+\.0\/detector: downloaded \d+ bytes with sha256 [0-9a-f]{64}, TUF metadata says \d+ bytes with sha256/,
      );
    } finally {
      await writeFile(stored, v2.bytes);
    }
    await expectRecovers(device, v2);
    device.close();
  });

  it('arbitrary target: a path the repository never signed is refused before any download', async () => {
    const device = await freshDevice('unsigned');
    const bytes = randomBytes(1000);
    const fake = { version: '6.6.6', targetPath: 'detector/6.6.6/detector', sha256: sha256(bytes), length: bytes.length };
    // The bytes are even there to be served, under the hash-prefixed name.
    const dir = path.join(repo.targetsDir, 'detector', '6.6.6');
    await (await import('node:fs/promises')).mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, `${fake.sha256}.detector`), bytes);
    await expectRefused(
      'arbitrary target (unsigned path)',
      device,
      assignmentFor(fake),
      /^MESH_ERR_TUF_TARGET_UNKNOWN: target "detector\/6\.6\.6\/detector" is not in the verified TUF metadata$/,
    );
    device.close();
  });

  it('rollback of timestamp: an older, genuinely signed timestamp is refused', async () => {
    const old = repo.bytes('timestamp.json');
    const v2 = await publish();
    const device = await freshDevice('rollback-timestamp');
    const genuine = repo.current().versions;
    await underAttack(async () => {
      repo.write('timestamp.json', old);
      await expectRefused(
        'rollback of timestamp',
        device,
        assignmentFor(v2),
        /^MESH_ERR_TUF_REFRESH: TUF metadata refresh failed: New timestamp version \d+ is less than current version \d+$/,
        genuine,
      );
    });
    await expectRecovers(device, v2);
    device.close();
  });

  it('rollback of snapshot: a new timestamp naming an older snapshot is refused', async () => {
    const v2 = await publish();
    const device = await freshDevice('rollback-snapshot');
    const genuine = repo.current().versions;
    await underAttack(async () => {
      const older = genuine.snapshot - 1;
      repo.write('timestamp.json', repo.timestampFor(older, repo.bytes(`${older}.snapshot.json`)));
      await expectRefused(
        'rollback of snapshot',
        device,
        assignmentFor(v2),
        /^MESH_ERR_TUF_REFRESH: TUF metadata refresh failed: New snapshot version \d+ is less than current version \d+$/,
        genuine,
      );
    });
    await expectRecovers(device, v2);
    device.close();
  });

  // Artifacts are signed into hash bins delegated by the "publisher" targets role (top-level
  // targets and publisher stay at their versions while artifacts are published; one bin
  // changes per publish), so the rollback and mix-and-match attacks on targets metadata aim at
  // the bin that signs the artifact.
  it("rollback of targets: a new snapshot naming an older version of the delegated targets (the artifact's bin) is refused", async () => {
    const v2 = await publish();
    const device = await freshDevice('rollback-targets');
    const genuine = repo.current().versions;
    const bin = repo.binOf(v2.targetPath);
    await underAttack(async () => {
      const older = bin.version - 1;
      const snapshot = repo.write(
        `${genuine.snapshot + 1}.snapshot.json`,
        repo.snapshotFor(genuine.snapshot + 1, older, repo.bytes(`${older}.${bin.role}.json`), { role: bin.role }),
      );
      repo.write('timestamp.json', repo.timestampFor(genuine.snapshot + 1, snapshot));
      await expectRefused(
        'rollback of targets (delegated bin role)',
        device,
        assignmentFor(v2),
        /^MESH_ERR_TUF_REFRESH: TUF metadata refresh failed: Unable to load snapshot metadata error Error: New version \d+ of publisher-bin-[0-9a-f]+\.json is less than current version \d+$/,
        genuine,
        { stolen: ['timestamp', 'snapshot'] },
      );
    });
    await expectRecovers(device, v2);
    device.close();
  });

  it('freeze: a correctly signed but expired timestamp is refused', async () => {
    const v2 = await publish();
    const device = await freshDevice('freeze');
    const genuine = repo.current().versions;
    await underAttack(async () => {
      repo.write('timestamp.json', repo.timestampFor(genuine.snapshot, repo.bytes(`${genuine.snapshot}.snapshot.json`), { expires: isoIn(-3_600_000) }));
      await expectRefused(
        'freeze (expired timestamp)',
        device,
        assignmentFor(v2),
        /^MESH_ERR_TUF_REFRESH: TUF metadata refresh failed: Final timestamp\.json is expired$/,
        genuine,
      );
    });
    await expectRecovers(device, v2);
    device.close();
  });

  it('mix-and-match without keys: an older genuine targets file served under the new version fails the snapshot hash', async () => {
    const device = await freshDevice('mix-and-match');
    const before = repo.binOf(`detector/2.${published + 1}.0/detector`);
    const oldTargets = repo.bytes(`${before.version}.${before.role}.json`);
    const v2 = await publish();
    const genuine = repo.current().versions;
    const bin = repo.binOf(v2.targetPath);
    await underAttack(async () => {
      repo.write(`${bin.version}.${bin.role}.json`, oldTargets);
      await expectRefused(
        'mix-and-match (old targets under the new name)',
        device,
        assignmentFor(v2),
        /^MESH_ERR_TUF_DELEGATION: delegated TUF metadata for "[^"]+" failed verification: Unable to load targets error Error: Expected (length|hash) .* but got /,
        genuine,
      );
    });
    await expectRecovers(device, v2);
    device.close();
  });

  it('mix-and-match with the snapshot key: a snapshot listing a targets version the served file is not', async () => {
    const device = await freshDevice('mix-and-match-version');
    const before = repo.binOf(`detector/2.${published + 1}.0/detector`);
    const oldTargets = repo.bytes(`${before.version}.${before.role}.json`);
    const v2 = await publish();
    const genuine = repo.current().versions;
    const bin = repo.binOf(v2.targetPath);
    await underAttack(async () => {
      // The snapshot (validly signed) lists the bin at N+1 without hashes; N+1.<bin>.json is the old file.
      const next = bin.version + 1;
      repo.write(`${next}.${bin.role}.json`, oldTargets);
      const snapshot = repo.write(`${genuine.snapshot + 1}.snapshot.json`, repo.snapshotFor(genuine.snapshot + 1, next, oldTargets, { role: bin.role, withHashes: false }));
      repo.write('timestamp.json', repo.timestampFor(genuine.snapshot + 1, snapshot));
      await expectRefused(
        'mix-and-match (snapshot names a version the file is not)',
        device,
        assignmentFor(v2),
        /^MESH_ERR_TUF_DELEGATION: delegated TUF metadata for "[^"]+" failed verification: Unable to load targets error Error: Version \d+ of publisher-bin-[0-9a-f]+ does not match snapshot version \d+$/,
        genuine,
        { stolen: ['timestamp', 'snapshot'] },
      );
    });
    await expectRecovers(device, v2);
    device.close();
  });

  it('endless data: a target longer than its signed length is cut off at the length', async () => {
    const v2 = await publish();
    const device = await freshDevice('endless-target');
    const stored = path.join(repo.targetsDir, 'detector', v2.version, `${v2.sha256}.detector`);
    await appendFile(stored, randomBytes(256 * 1024));
    try {
      await expectRefused(
        'endless data (target)',
        device,
        assignmentFor(v2),
        /^MESH_ERR_DIGEST_MISMATCH: detector\/2\.\d+\.0\/detector: server sent more than the \d+ bytes TUF allows$/,
      );
    } finally {
      await writeFile(stored, v2.bytes);
    }
    await expectRecovers(device, v2);
    device.close();
  });

  it('endless data: a timestamp.json far beyond its size limit is not read to the end', async () => {
    const v2 = await publish();
    const device = await freshDevice('endless-metadata');
    const genuine = repo.current().versions;
    await underAttack(async () => {
      repo.write('timestamp.json', Buffer.concat([repo.bytes('timestamp.json'), Buffer.alloc(4 * 1024 * 1024, 0x20)]));
      await expectRefused('endless data (timestamp metadata)', device, assignmentFor(v2), /^MESH_ERR_TUF_REFRESH: TUF metadata refresh failed: Max length reached$/, genuine);
    });
    await expectRecovers(device, v2);
    device.close();
  });

  it('signatures by the wrong key: an attacker key, and a real key of another role', async () => {
    const v2 = await publish();
    const device = await freshDevice('wrong-key');
    const genuine = repo.current().versions;
    await underAttack(async () => {
      const attacker = loadKey(undefined);
      repo.write('timestamp.json', repo.timestampFor(genuine.snapshot, repo.bytes(`${genuine.snapshot}.snapshot.json`), { keys: [attacker] }));
      await expectRefused(
        'wrong key (timestamp by an attacker key)',
        device,
        assignmentFor(v2),
        /^MESH_ERR_TUF_REFRESH: TUF metadata refresh failed: timestamp was signed by 0\/1 keys$/,
        genuine,
      );
    });
    await underAttack(async () => {
      // The targets key (stolen) signs a snapshot; the real timestamp key vouches for its hash.
      const snapshot = repo.write(
        `${genuine.snapshot + 1}.snapshot.json`,
        repo.snapshotFor(genuine.snapshot + 1, genuine.targets, repo.bytes(`${genuine.targets}.targets.json`), { keys: [repo.key('targets')] }),
      );
      repo.write('timestamp.json', repo.timestampFor(genuine.snapshot + 1, snapshot));
      await expectRefused(
        'wrong key (snapshot by the targets key)',
        device,
        assignmentFor(v2),
        /^MESH_ERR_TUF_REFRESH: TUF metadata refresh failed: Unable to load snapshot metadata error Error: snapshot was signed by 0\/1 keys$/,
        genuine,
        { stolen: ['timestamp'] },
      );
    });
    await expectRecovers(device, v2);
    device.close();
  });

  it("an assignment whose expected digest differs from TUF's, or whose spec differs from the signed one, fails before download", async () => {
    const v2 = await publish();
    const device = await freshDevice('digest-mismatch');
    await expectRefused(
      'assignment digest differs from TUF',
      device,
      assignmentFor({ ...v2, sha256: sha256(v1Bytes) }),
      /^MESH_ERR_DIGEST_MISMATCH: assignment expects sha256 [0-9a-f]{64} \(\d+ bytes\) but the TUF-verified target has sha256 [0-9a-f]{64} \(\d+ bytes\)$/,
    );
    await expectRefused('assignment length differs from TUF', device, assignmentFor({ ...v2, length: v2.length + 1 }), /^MESH_ERR_DIGEST_MISMATCH: assignment expects/);
    await expectRefused(
      'assignment spec differs from the signed spec',
      device,
      assignmentFor(v2, { specJson: JSON.stringify({ fileName: 'elsewhere' }) }),
      /^MESH_ERR_SPEC_INVALID: assignment spec differs from the spec signed into the TUF target$/,
    );
    await expectRecovers(device, v2);
    device.close();
  });

  it('a root rotation the trusted root did not sign is refused', async () => {
    const v2 = await publish();
    const device = await freshDevice('untrusted-root');
    const genuine = repo.current().versions;
    await underAttack(async () => {
      const attacker = loadKey(undefined);
      const current = repo.read(MetadataKind.Root, 'root.json').toJSON() as { signed: Record<string, any> };
      const signed = current.signed;
      signed.version = 2;
      for (const id of signed.roles.root.keyids) delete signed.keys[id];
      signed.keys[attacker.key.keyID] = attacker.key.toJSON();
      signed.roles.root.keyids = [attacker.key.keyID];
      signed.roles.timestamp.keyids = [attacker.key.keyID];
      const rotated = sign(Metadata.fromJSON(MetadataKind.Root, { signed, signatures: [] }), [attacker]);
      repo.write('2.root.json', rotated);
      repo.write('timestamp.json', repo.timestampFor(genuine.snapshot, repo.bytes(`${genuine.snapshot}.snapshot.json`), { keys: [attacker] }));
      await expectRefused(
        'root rotation not signed by the trusted root',
        device,
        assignmentFor(v2),
        /^MESH_ERR_TUF_REFRESH: TUF metadata refresh failed: root was signed by 0\/1 keys$/,
        genuine,
      );
    });
    expect(JSON.parse(readFileSync(path.join(device.dataDir, 'tuf', 'root.json'), 'utf8')).signed.version).toBe(1);
    await expectRecovers(device, v2);
    device.close();
  });

  // Last: it rotates the server's keys for good.
  it('a root rotation signed by the old and the new root keys is followed; the old timestamp key is then refused', async () => {
    const device = await freshDevice('rotation');
    const oldRoot = repo.key('root');
    const oldTimestamp = repo.key('timestamp');
    const newRoot = loadKey(undefined);
    const newTimestamp = loadKey(undefined);
    const current = repo.read(MetadataKind.Root, 'root.json').toJSON() as { signed: Record<string, any> };
    const signed = current.signed;
    expect(signed.version).toBe(1);
    signed.version = 2;
    delete signed.keys[oldRoot.key.keyID];
    delete signed.keys[oldTimestamp.key.keyID];
    signed.keys[newRoot.key.keyID] = newRoot.key.toJSON();
    signed.keys[newTimestamp.key.keyID] = newTimestamp.key.toJSON();
    signed.roles.root.keyids = [newRoot.key.keyID];
    signed.roles.timestamp.keyids = [newTimestamp.key.keyID];
    const rotated = sign(Metadata.fromJSON(MetadataKind.Root, { signed, signatures: [] }), [oldRoot, newRoot]);
    // The operator's rotation: the new root next to the old, and the new keys in place.
    repo.write('2.root.json', rotated);
    repo.write('root.json', rotated);
    await writeFile(path.join(repo.keysDir, 'root.pem'), newRoot.pem, { mode: 0o600 });
    await writeFile(path.join(repo.keysDir, 'timestamp.pem'), newTimestamp.pem, { mode: 0o600 });
    const before = repo.current().versions;
    repo.write('timestamp.json', repo.timestampFor(before.snapshot, repo.bytes(`${before.snapshot}.snapshot.json`), { keys: [newTimestamp] }));
    // The repository (reopened: role keys are cached per process) now signs with the new key.
    await ctx.close();
    ctx = await openDataDir({ dataDir: serverDir });
    const v3 = await publish(randomBytes(40 * 1024), '3.0.0');
    const ts = repo.read(MetadataKind.Timestamp, 'timestamp.json');
    expect(Object.keys(ts.signatures)).toEqual([newTimestamp.key.keyID]);

    const state = await runPipeline(device.agent, assignmentFor(v3), new AbortController().signal);
    rows.push({ attack: 'root rotation signed by old and new root (must be followed)', result: state, reason: device.agent.state.current.outbox.at(-1)?.reason });
    expect(state, device.agent.state.current.outbox.at(-1)?.reason).toBe('HEALTHY');
    expect(sha256(await liveBytes(device))).toBe(v3.sha256);
    expect(JSON.parse(readFileSync(path.join(device.dataDir, 'tuf', 'root.json'), 'utf8')).signed.version).toBe(2);

    // From now on the old timestamp key is worthless, even for a newer version.
    const v4 = await publish(randomBytes(40 * 1024), '4.0.0');
    const genuine = repo.current().versions;
    await underAttack(async () => {
      repo.write('timestamp.json', repo.timestampFor(genuine.snapshot, repo.bytes(`${genuine.snapshot}.snapshot.json`), { keys: [oldTimestamp], version: genuine.timestamp + 5 }));
      const before = await liveBytes(device);
      const result = await runPipeline(device.agent, assignmentFor(v4), new AbortController().signal);
      const reason = device.agent.state.current.outbox.at(-1)?.reason;
      rows.push({ attack: 'timestamp signed by the rotated-out key', result, reason });
      expect(result).toBe('FAILED');
      expect(reason).toMatch(/^MESH_ERR_TUF_REFRESH: TUF metadata refresh failed: timestamp was signed by 0\/1 keys$/);
      expect(await liveBytes(device)).toEqual(before);
    });
    const again = await runPipeline(device.agent, assignmentFor(v4), new AbortController().signal);
    expect(again).toBe('HEALTHY');
    rows.at(-1)!.recovered = true;
    device.close();
  });
});
