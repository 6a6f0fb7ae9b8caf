// TufTargetSource (the device's TUF client) against real repositories: metadata built and
// signed with @tufjs/models, written as real files, served by a real HTTPS server with
// client-certificate verification on 127.0.0.1 (certificates made with the openssl CLI).
// Two rules from issue 29:
// - strict signed intent: a target whose metadata carries no signed kind and spec
//   (custom.meshanics) is refused before its bytes are requested, unless the agent opts out;
// - consistent_snapshot: targets are fetched as HASH.FILENAME only when the trusted root says
//   consistent_snapshot: true (TUF spec 5.7.3), metadata as VERSION.ROLE.json only then
//   (spec 5.5.1, 5.6.1); a repository serving the other layout fails with a clear reason.
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Key, Metadata, MetaFile, Root, Signature, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, AgentStateStore, MeshError, parseAgentConfig, runPipeline, type TransitionEvent } from '../src/index.js';
import { createDeviceHttpsAgent } from '../src/transport/https-get.js';
import { TufTargetSource } from '../src/tuf/tuf-target-source.js';
import { FakeFileArtifactPlugin, FakeProbePlugin } from './fixtures/fake-plugins.mjs';
import { makeAssignment, tempDir } from './helpers.js';

const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
const hex = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('hex');
const keyBody = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: hex } };
const key = new Key({ keyID: crypto.createHash('sha256').update(canonicalize(keyBody)).digest('hex'), keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: hex } });
const expires = new Date(Date.now() + 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

function signed(md: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
  (md as Metadata<Targets>).sign((bytes) => new Signature({ keyID: key.keyID, sig: crypto.sign(null, bytes, privateKey).toString('hex') }));
  return Buffer.from(canonicalize(md.toJSON()));
}

interface RepoTarget {
  path: string;
  bytes: Buffer;
  custom?: Record<string, unknown>;
}

/** Which names the served directory holds: what the root prescribes, or the other layout (a misconfigured repository). */
type Layout = 'versioned' | 'plain';

/**
 * A one-key repository (root v1, targets v1, snapshot v1, timestamp v1) written under
 * `dir/tuf/metadata` and `dir/tuf/targets` with `metadata` and `targets` naming. Returns the
 * root's bytes (the device's pinned root).
 */
async function writeRepository(
  dir: string,
  consistentSnapshot: boolean,
  targets: RepoTarget[],
  names: { metadata: Layout; targets: Layout },
  pinnedConsistentSnapshot?: boolean,
): Promise<Buffer> {
  const rootOf = (version: number, consistent: boolean) => {
    const root = new Root({ version, specVersion: '1.0.31', expires, consistentSnapshot: consistent });
    for (const role of ['root', 'targets', 'snapshot', 'timestamp']) root.addKey(key, role);
    return root;
  };
  // With `pinnedConsistentSnapshot` the device pins a root v1 saying that, and the repository
  // serves a rotation to v2 saying `consistentSnapshot` (signed by the same key, spec 5.3.4).
  const rotated = pinnedConsistentSnapshot !== undefined;
  const root = rootOf(rotated ? 2 : 1, consistentSnapshot);
  const files: Record<string, TargetFile> = {};
  for (const t of targets) {
    files[t.path] = new TargetFile({
      path: t.path,
      length: t.bytes.length,
      hashes: { sha256: sha256(t.bytes) },
      ...(t.custom ? { unrecognizedFields: { custom: t.custom } as TargetFile['unrecognizedFields'] } : {}),
    });
  }
  const targetsBytes = signed(new Metadata(new Targets({ version: 1, specVersion: '1.0.31', expires, targets: files })));
  const snapshotBytes = signed(
    new Metadata(new Snapshot({ version: 1, specVersion: '1.0.31', expires, meta: { 'targets.json': new MetaFile({ version: 1, length: targetsBytes.length }) } })),
  );
  const timestampBytes = signed(
    new Metadata(new Timestamp({ version: 1, specVersion: '1.0.31', expires, snapshotMeta: new MetaFile({ version: 1, length: snapshotBytes.length }) })),
  );
  const rootBytes = signed(new Metadata(root));
  const pinnedBytes = rotated ? signed(new Metadata(rootOf(1, pinnedConsistentSnapshot))) : rootBytes;
  const metadataDir = path.join(dir, 'tuf', 'metadata');
  await mkdir(metadataDir, { recursive: true });
  const v = names.metadata === 'versioned' ? '1.' : '';
  await writeFile(path.join(metadataDir, '1.root.json'), pinnedBytes);
  if (rotated) await writeFile(path.join(metadataDir, '2.root.json'), rootBytes);
  await writeFile(path.join(metadataDir, `${v}targets.json`), targetsBytes);
  await writeFile(path.join(metadataDir, `${v}snapshot.json`), snapshotBytes);
  await writeFile(path.join(metadataDir, 'timestamp.json'), timestampBytes);
  for (const t of targets) {
    const dirName = path.dirname(t.path);
    const base = path.basename(t.path);
    const file = path.join(dir, 'tuf', 'targets', dirName, names.targets === 'versioned' ? `${sha256(t.bytes)}.${base}` : base);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, t.bytes);
  }
  return pinnedBytes;
}

let server: https.Server;
let base: string;
let httpsAgent: https.Agent;
/** The directory the server serves now (each test writes its own repository). */
let docroot = '';
let requests: string[] = [];
/** Network faults the server injects next (reset by device()): real dropped connections and 503s. */
const faults = { dropTargetsMidBody: 0, unavailableTimestamps: 0 };
let ranges: string[] = [];

function openssl(dir: string, ...args: string[]) {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

beforeAll(async () => {
  const dir = await tempDir('tuf-source-pki');
  await writeFile(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=test-ca', '-days', '1');
  for (const name of ['server', 'device']) {
    openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', 'san.ext');
  }
  const pem = (f: string) => readFileSync(path.join(dir, f));
  // A static file server: the URL path under the docroot, 404 for anything else.
  server = https.createServer({ key: pem('server.key'), cert: pem('server.crt'), ca: pem('ca.crt'), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url ?? '/', 'https://x').pathname);
    requests.push(urlPath);
    const file = path.join(docroot, path.normalize(urlPath));
    if (urlPath.endsWith('/timestamp.json') && faults.unavailableTimestamps > 0) {
      faults.unavailableTimestamps -= 1;
      res.writeHead(503);
      res.end();
      return;
    }
    readFile(file).then(
      (bytes) => {
        const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
        if (req.headers.range) ranges.push(req.headers.range);
        const body = bytes.subarray(from);
        res.writeHead(from > 0 ? 206 : 200, { 'content-length': body.length, ...(from > 0 ? { 'content-range': `bytes ${from}-${bytes.length - 1}/${bytes.length}` } : {}) });
        if (urlPath.startsWith('/tuf/targets/') && faults.dropTargetsMidBody > 0) {
          faults.dropTargetsMidBody -= 1;
          // Half the rest, then the connection goes: a reset in the middle of the body.
          res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.socket?.destroy());
          return;
        }
        res.end(body);
      },
      () => {
        res.writeHead(404);
        res.end();
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  httpsAgent = createDeviceHttpsAgent({ ca: pem('ca.crt'), cert: pem('device.crt'), key: pem('device.key') });
});

afterAll(async () => {
  httpsAgent?.destroy();
  await new Promise((resolve) => server?.close(resolve));
});

const APP = Buffer.from('application bytes, version one\n');
const APP_PATH = 'app/1.0.0/app';
const SIGNED = { meshanics: { kind: 'fake', spec: { label: 'signed' } } };

/** Serves a fresh repository and returns a device (fresh metadata dir) that pins its root. */
async function device(
  consistentSnapshot: boolean,
  targets: RepoTarget[],
  names: { metadata: Layout; targets: Layout },
  allowUnsignedIntent?: boolean,
  pinnedConsistentSnapshot?: boolean,
) {
  docroot = await tempDir('tuf-repo');
  const rootBytes = await writeRepository(docroot, consistentSnapshot, targets, names, pinnedConsistentSnapshot);
  const dataDir = await tempDir('tuf-device');
  const pinned = path.join(dataDir, 'pinned-root.json');
  await writeFile(pinned, rootBytes);
  requests = [];
  ranges = [];
  faults.dropTargetsMidBody = 0;
  faults.unavailableTimestamps = 0;
  const source = await TufTargetSource.create({
    metadataDir: path.join(dataDir, 'tuf'),
    pinnedRootFile: pinned,
    artifactServer: base,
    httpsAgent,
    fetchTimeoutMs: 5_000,
    ...(allowUnsignedIntent === undefined ? {} : { allowUnsignedIntent }),
  });
  return { source, dataDir };
}

const never = new AbortController().signal;

async function fetchInto(source: TufTargetSource, dataDir: string, targetPath = APP_PATH): Promise<Buffer> {
  const target = await source.resolve(targetPath);
  const destination = path.join(dataDir, 'staged');
  await source.fetch(target, destination, { onProgress: () => undefined, signal: never });
  return readFile(destination);
}

/** An agent on `source` with the fake file artifact and probe plugins: the hooks they call, and every transition. */
async function fakeAgent(source: TufTargetSource, dataDir: string): Promise<{ agent: Agent; calls: string[]; events: TransitionEvent[] }> {
  const agent = new Agent({ dataDir, targetSource: source, state: await AgentStateStore.open(dataDir) });
  const calls: string[] = [];
  agent.use(new FakeFileArtifactPlugin({ calls }));
  agent.use(new FakeProbePlugin({ calls }));
  const events: TransitionEvent[] = [];
  agent.hooks.transition.tap('test', (e) => {
    events.push(e);
  });
  return { agent, calls, events };
}

async function meshError(p: Promise<unknown>): Promise<MeshError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MeshError);
  return err as MeshError;
}

describe('TufTargetSource: consistent_snapshot follows the trusted root (TUF spec 5.5.1, 5.6.1, 5.7.3)', () => {
  it('root says false: fetches snapshot.json, targets.json and the target under its plain name, never a hash-prefixed one', async () => {
    const { source, dataDir } = await device(false, [{ path: APP_PATH, bytes: APP, custom: SIGNED }], { metadata: 'plain', targets: 'plain' });
    expect(await fetchInto(source, dataDir)).toEqual(APP);
    expect(requests).toEqual([
      '/tuf/metadata/2.root.json',
      '/tuf/metadata/timestamp.json',
      '/tuf/metadata/snapshot.json',
      '/tuf/metadata/targets.json',
      `/tuf/targets/${APP_PATH}`,
    ]);
  });

  it('root says true: fetches VERSION.ROLE.json and the target as HASH.FILENAME', async () => {
    const { source, dataDir } = await device(true, [{ path: APP_PATH, bytes: APP, custom: SIGNED }], { metadata: 'versioned', targets: 'versioned' });
    expect(await fetchInto(source, dataDir)).toEqual(APP);
    expect(requests).toEqual([
      '/tuf/metadata/2.root.json',
      '/tuf/metadata/timestamp.json',
      '/tuf/metadata/1.snapshot.json',
      '/tuf/metadata/1.targets.json',
      `/tuf/targets/app/1.0.0/${sha256(APP)}.app`,
    ]);
  });

  it('follows the root the device trusts now, not the one it was provisioned with: a rotation from true to false and from false to true', async () => {
    const toPlain = await device(false, [{ path: APP_PATH, bytes: APP, custom: SIGNED }], { metadata: 'plain', targets: 'plain' }, undefined, true);
    expect(await fetchInto(toPlain.source, toPlain.dataDir)).toEqual(APP);
    expect(requests).toEqual([
      '/tuf/metadata/2.root.json',
      '/tuf/metadata/3.root.json',
      '/tuf/metadata/timestamp.json',
      '/tuf/metadata/snapshot.json',
      '/tuf/metadata/targets.json',
      `/tuf/targets/${APP_PATH}`,
    ]);
    const toConsistent = await device(true, [{ path: APP_PATH, bytes: APP, custom: SIGNED }], { metadata: 'versioned', targets: 'versioned' }, undefined, false);
    expect(await fetchInto(toConsistent.source, toConsistent.dataDir)).toEqual(APP);
    expect(requests.at(-1)).toBe(`/tuf/targets/app/1.0.0/${sha256(APP)}.app`);
  });

  it('reads the trusted root whole while tuf-js rewrites it: concurrent pipelines persist root.json synchronously (writeFileSync, no rename)', async () => {
    const { source, dataDir } = await device(true, [{ path: APP_PATH, bytes: APP, custom: SIGNED }], { metadata: 'versioned', targets: 'versioned' });
    const target = await source.resolve(APP_PATH);
    const trusted = path.join(dataDir, 'tuf', 'root.json');
    const bytes = readFileSync(trusted);
    // Another pipeline's refresh persisting the same verified root again and again, on the
    // main thread as tuf-js does (Updater.persistMetadata), while these fetches read it.
    let writing = true;
    const rewrite = (): void => {
      if (!writing) return;
      for (let i = 0; i < 20; i += 1) writeFileSync(trusted, bytes);
      setImmediate(rewrite);
    };
    setImmediate(rewrite);
    // Aborted fetches: each reads the trusted root, then stops before the download.
    const reasons = new Set<string>();
    try {
      for (let i = 0; i < 40; i += 1) {
        const err = await source.fetch(target, path.join(dataDir, 'staged'), { onProgress: () => undefined, signal: AbortSignal.abort(new Error('stop')) }).then(
          () => undefined,
          (e: unknown) => e,
        );
        reasons.add(err instanceof MeshError && err.code === 'MESH_ERR_TUF_REFRESH' ? err.message : 'read whole');
      }
    } finally {
      writing = false;
    }
    expect([...reasons]).toEqual(['read whole']);
    await source.fetch(target, path.join(dataDir, 'staged'), { onProgress: () => undefined, signal: never });
    expect(await readFile(path.join(dataDir, 'staged'))).toEqual(APP);
  });

  it('root says false but the server has only the hash-prefixed target: fails naming the rule, nothing staged', async () => {
    const { source, dataDir } = await device(false, [{ path: APP_PATH, bytes: APP, custom: SIGNED }], { metadata: 'plain', targets: 'versioned' });
    const err = await meshError(fetchInto(source, dataDir));
    expect(err.code).toBe('MESH_ERR_DOWNLOAD_FAILED');
    expect(err.message).toBe(
      `download of ${APP_PATH} failed: GET ${base}/tuf/targets/${APP_PATH} answered HTTP 404; the trusted root says consistent_snapshot: false, so the target is fetched as FILENAME, not HASH.FILENAME (TUF spec 5.7.3)`,
    );
    await expect(readFile(path.join(dataDir, 'staged'))).rejects.toThrow(/ENOENT/);
  });

  it('root says true but the server has only the plain-named target: fails naming the rule', async () => {
    const { source, dataDir } = await device(true, [{ path: APP_PATH, bytes: APP, custom: SIGNED }], { metadata: 'versioned', targets: 'plain' });
    const err = await meshError(fetchInto(source, dataDir));
    expect(err.code).toBe('MESH_ERR_DOWNLOAD_FAILED');
    expect(err.message).toBe(
      `download of ${APP_PATH} failed: GET ${base}/tuf/targets/app/1.0.0/${sha256(APP)}.app answered HTTP 404; the trusted root says consistent_snapshot: true, so the target is fetched as HASH.FILENAME (TUF spec 5.7.3)`,
    );
  });

  it('metadata in the other layout fails the refresh: VERSION.snapshot.json when root says false, snapshot.json when it says true', async () => {
    const plainRoot = await device(false, [{ path: APP_PATH, bytes: APP, custom: SIGNED }], { metadata: 'versioned', targets: 'plain' });
    const e1 = await meshError(plainRoot.source.resolve(APP_PATH));
    expect(e1.code).toBe('MESH_ERR_TUF_REFRESH');
    expect(e1.message).toMatch(/Unable to load snapshot metadata .*snapshot\.json answered HTTP 404/);
    expect(requests).toContain('/tuf/metadata/snapshot.json');

    const consistentRoot = await device(true, [{ path: APP_PATH, bytes: APP, custom: SIGNED }], { metadata: 'plain', targets: 'versioned' });
    const e2 = await meshError(consistentRoot.source.resolve(APP_PATH));
    expect(e2.code).toBe('MESH_ERR_TUF_REFRESH');
    expect(e2.message).toMatch(/Unable to load snapshot metadata .*1\.snapshot\.json answered HTTP 404/);
  });
});

describe('TufTargetSource: a trusted root torn by a power cut', () => {
  // tuf-js rewrites root.json in place (writeFileSync: truncate, then write); a power cut in
  // between is simulated by truncating the file the way such a cut leaves it.
  async function tornRoot(dropLastGood: boolean): Promise<{ recovered: string[]; dataDir: string; resolve: () => Promise<unknown> }> {
    // The server's root is version 2, signed over the pinned version 1 (a rotation).
    const first = await device(false, [{ path: APP_PATH, bytes: APP, custom: SIGNED }], { metadata: 'plain', targets: 'plain' }, undefined, true);
    await first.source.resolve(APP_PATH);
    const trusted = path.join(first.dataDir, 'tuf', 'root.json');
    const lastGood = path.join(first.dataDir, 'tuf.root-last-good.json');
    expect(readFileSync(lastGood)).toEqual(readFileSync(trusted));
    const whole = readFileSync(trusted);
    writeFileSync(trusted, whole.subarray(0, whole.length >> 1));
    if (dropLastGood) await rm(lastGood);
    const recovered: string[] = [];
    // The agent after the reboot: a new source on the same data dir.
    const source = await TufTargetSource.create({
      metadataDir: path.join(first.dataDir, 'tuf'),
      pinnedRootFile: path.join(first.dataDir, 'pinned-root.json'),
      artifactServer: base,
      httpsAgent,
      fetchTimeoutMs: 5_000,
      onTrustRecovered: (m) => recovered.push(m),
    });
    requests = [];
    return { recovered, dataDir: first.dataDir, resolve: () => source.resolve(APP_PATH) };
  }

  it('restores the last root the device verified, and the next refresh succeeds', async () => {
    const { recovered, dataDir, resolve } = await tornRoot(false);
    await expect(resolve()).resolves.toMatchObject({ targetPath: APP_PATH });
    expect(recovered).toHaveLength(1);
    expect(recovered[0]).toMatch(/root\.json was unreadable .*restored .*tuf\.root-last-good\.json/);
    expect(JSON.parse(readFileSync(path.join(dataDir, 'tuf', 'root.json'), 'utf8')).signed.version).toBe(2);
    // Already at the newest root: only the next version is asked for.
    expect(requests[0]).toBe('/tuf/metadata/3.root.json');
  });

  it('without a kept copy restores the pinned root and walks the root chain forward again, verifying each step', async () => {
    const { recovered, dataDir, resolve } = await tornRoot(true);
    await expect(resolve()).resolves.toMatchObject({ targetPath: APP_PATH });
    expect(recovered[0]).toMatch(/restored .*pinned-root\.json/);
    expect(requests.slice(0, 2)).toEqual(['/tuf/metadata/2.root.json', '/tuf/metadata/3.root.json']);
    expect(JSON.parse(readFileSync(path.join(dataDir, 'tuf', 'root.json'), 'utf8')).signed.version).toBe(2);
  });
});

describe('TufTargetSource: strict signed intent (custom.meshanics)', () => {
  const UNSIGNED = Buffer.from('bytes signed without an intent\n');
  const KIND_ONLY = Buffer.from('bytes signed with a kind only\n');
  const repo: RepoTarget[] = [
    { path: APP_PATH, bytes: APP, custom: SIGNED },
    { path: 'bare/1.0.0/bare', bytes: UNSIGNED },
    { path: 'other/1.0.0/other', bytes: UNSIGNED, custom: { vendor: { note: 'not ours' } } },
    { path: 'half/1.0.0/half', bytes: KIND_ONLY, custom: { meshanics: { kind: 'fake' } } },
    { path: 'model/1.0.0/model', bytes: APP, custom: { meshanics: { kind: 'model', spec: {} } } },
  ];

  it('refuses a target without a signed kind and spec before requesting its bytes', async () => {
    const { source } = await device(true, repo, { metadata: 'versioned', targets: 'versioned' });
    for (const targetPath of ['bare/1.0.0/bare', 'other/1.0.0/other', 'half/1.0.0/half']) {
      const err = await meshError(source.resolve(targetPath));
      expect(err.code).toBe('MESH_ERR_TUF_INTENT_UNSIGNED');
      expect(err.message).toBe(
        `target "${targetPath}" carries no signed kind and spec (custom.meshanics in the TUF targets metadata); refusing to take the control plane's word for them (agent config tuf.allowUnsignedIntent allows it)`,
      );
    }
    expect(requests.filter((r) => r.startsWith('/tuf/targets/'))).toEqual([]);
    // The signed one resolves with its intent.
    expect((await source.resolve(APP_PATH)).signed).toEqual(SIGNED.meshanics);
  });

  it('accepts it when the agent opts out (tuf.allowUnsignedIntent), with no intent to hold the assignment to', async () => {
    const { source, dataDir } = await device(true, repo, { metadata: 'versioned', targets: 'versioned' }, true);
    const target = await source.resolve('bare/1.0.0/bare');
    expect(target).toEqual({ targetPath: 'bare/1.0.0/bare', length: UNSIGNED.length, sha256: sha256(UNSIGNED) });
    expect(await fetchInto(source, dataDir, 'bare/1.0.0/bare')).toEqual(UNSIGNED);
  });

  it('through the pipeline: FAILED with MESH_ERR_TUF_INTENT_UNSIGNED and no hook called; a signed intent must match the assignment', async () => {
    const { source, dataDir } = await device(true, repo, { metadata: 'versioned', targets: 'versioned' });
    const { agent, calls, events } = await fakeAgent(source, dataDir);
    const unsigned = { targetPath: 'bare/1.0.0/bare', length: UNSIGNED.length, sha256: sha256(UNSIGNED) };
    expect(await runPipeline(agent, makeAssignment(unsigned, { specJson: '{"label":"any"}' }), never)).toBe('FAILED');
    expect(events.map((e) => e.state)).toEqual(['DOWNLOADING', 'FAILED']);
    expect(events.at(-1)?.reason).toMatch(/^MESH_ERR_TUF_INTENT_UNSIGNED: target "bare\/1.0.0\/bare" carries no signed kind and spec/);
    expect(calls).toEqual(['cleanup']);
    expect(requests.filter((r) => r.startsWith('/tuf/targets/'))).toEqual([]);

    // Signed intent present: a different spec or kind fails before download, the signed one installs.
    const app = { targetPath: APP_PATH, length: APP.length, sha256: sha256(APP) };
    expect(await runPipeline(agent, makeAssignment(app, { specJson: '{"label":"forged"}' }), never)).toBe('FAILED');
    expect(events.at(-1)?.reason).toBe('MESH_ERR_SPEC_INVALID: assignment spec differs from the spec signed into the TUF target');
    const model = { targetPath: 'model/1.0.0/model', length: APP.length, sha256: sha256(APP) };
    expect(await runPipeline(agent, makeAssignment(model), never)).toBe('FAILED');
    expect(events.at(-1)?.reason).toBe('MESH_ERR_SPEC_INVALID: assignment kind "fake" differs from the signed kind "model"');
    expect(requests.filter((r) => r.startsWith('/tuf/targets/'))).toEqual([]);
    expect(await runPipeline(agent, makeAssignment(app, { specJson: '{"label":"signed"}' }), never)).toBe('HEALTHY');
    expect(await readFile(path.join(dataDir, 'artifacts', 'fake', 'thing'))).toEqual(APP);
  });
});

describe('the pipeline over a network that fails on the way', () => {
  const BIG = crypto.randomBytes(4 * 1024 * 1024);
  const BIG_PATH = 'big/1.0.0/big';
  const big = { targetPath: BIG_PATH, length: BIG.length, sha256: sha256(BIG) };
  const repo = () => [{ path: BIG_PATH, bytes: BIG, custom: SIGNED }];
  const signedSpec = { specJson: '{"label":"signed"}' };

  it('resumes a download whose connection was reset in the middle of the body, and ends HEALTHY', async () => {
    const { source, dataDir } = await device(true, repo(), { metadata: 'versioned', targets: 'versioned' });
    const { agent, events } = await fakeAgent(source, dataDir);
    faults.dropTargetsMidBody = 2;
    expect(await runPipeline(agent, makeAssignment(big, signedSpec), never)).toBe('HEALTHY');
    expect(events.map((e) => e.state).filter((s) => s !== 'DOWNLOADING')).toEqual(['VERIFYING', 'APPLYING', 'HEALTHY']);
    // Each attempt asked only for what the previous ones had not kept.
    expect(ranges).toHaveLength(2);
    // equals(), not toEqual: a deep comparison of 4 MiB takes seconds.
    expect((await readFile(path.join(dataDir, 'artifacts', 'fake', 'thing'))).equals(BIG)).toBe(true);
  });

  it('retries a TUF refresh the server answered with 503', async () => {
    const { source, dataDir } = await device(true, repo(), { metadata: 'versioned', targets: 'versioned' });
    const { agent } = await fakeAgent(source, dataDir);
    faults.unavailableTimestamps = 1;
    expect(await runPipeline(agent, makeAssignment(big, signedSpec), never)).toBe('HEALTHY');
  });

  it('holds the update back when every attempt fails on the network: never FAILED, the journal and the partial download kept, resumed by the next run', async () => {
    const { source, dataDir } = await device(true, repo(), { metadata: 'versioned', targets: 'versioned' });
    const { agent, events, calls } = await fakeAgent(source, dataDir);
    faults.dropTargetsMidBody = 3;
    const assignment = makeAssignment(big, signedSpec);
    expect(await runPipeline(agent, assignment, never)).toBe('DOWNLOADING');
    expect(events.at(-1)?.state).toBe('DOWNLOADING');
    expect(events.at(-1)?.reason).toMatch(
      /^MESH_ERR_DOWNLOAD_FAILED: download of big\/1\.0\.0\/big interrupted: .*; 3 attempts failed on the network, resuming at the next heartbeat$/,
    );
    expect(agent.state.current.inflight.thing).toMatchObject({ phase: 'downloading', heldByNetwork: true });
    expect(agent.state.current.completed[assignment.assignmentId]).toBeUndefined();
    expect(calls).toEqual([]); // no hook ran: nothing on the device changed
    // What the three attempts kept (7/8 of the target) is asked for no more.
    ranges = [];
    expect(await runPipeline(agent, assignment, never)).toBe('HEALTHY');
    expect(events.find((e) => e.reason === 'resuming after the network failed')).toBeDefined();
    expect(ranges).toEqual([`bytes=${BIG.length - BIG.length / 8}-`]);
    // equals(), not toEqual: a deep comparison of 4 MiB takes seconds.
    expect((await readFile(path.join(dataDir, 'artifacts', 'fake', 'thing'))).equals(BIG)).toBe(true);
  });

  it('does not retry what the server refused: a target it does not have ends FAILED at once', async () => {
    const { source, dataDir } = await device(true, repo(), { metadata: 'versioned', targets: 'plain' });
    const { agent, events } = await fakeAgent(source, dataDir);
    expect(await runPipeline(agent, makeAssignment(big, signedSpec), never)).toBe('FAILED');
    expect(events.at(-1)?.reason).toMatch(/answered HTTP 404/);
    expect(requests.filter((r) => r.startsWith('/tuf/targets/'))).toHaveLength(1);
  });
});

describe('TufTargetSource: the opt-out covers only an absent intent', () => {
  const HALF = Buffer.from('bytes signed with a kind only\n');
  const repo: RepoTarget[] = [
    { path: 'half/1.0.0/half', bytes: HALF, custom: { meshanics: { kind: 'model' } } },
    { path: 'numeric/1.0.0/numeric', bytes: HALF, custom: { meshanics: { kind: 7, spec: {} } } },
    { path: 'listed/1.0.0/listed', bytes: HALF, custom: { meshanics: ['model', {}] } },
  ];

  it('with tuf.allowUnsignedIntent a half intent is still held to: the signed kind is enforced', async () => {
    const { source, dataDir } = await device(true, repo, { metadata: 'versioned', targets: 'versioned' }, true);
    expect((await source.resolve('half/1.0.0/half')).signed).toEqual({ kind: 'model' });
    const { agent, events } = await fakeAgent(source, dataDir);
    const half = { targetPath: 'half/1.0.0/half', length: HALF.length, sha256: sha256(HALF) };
    expect(await runPipeline(agent, makeAssignment(half), never)).toBe('FAILED');
    expect(events.at(-1)?.reason).toBe('MESH_ERR_SPEC_INVALID: assignment kind "fake" differs from the signed kind "model"');
    expect(requests.filter((r) => r.startsWith('/tuf/targets/'))).toEqual([]);
  });

  it('a custom.meshanics of the wrong type is refused with or without the opt-out, before its bytes are requested', async () => {
    for (const allow of [false, true]) {
      const { source } = await device(true, repo, { metadata: 'versioned', targets: 'versioned' }, allow);
      for (const targetPath of ['numeric/1.0.0/numeric', 'listed/1.0.0/listed']) {
        const err = await meshError(source.resolve(targetPath));
        expect(err.code, `${targetPath} allow=${allow}`).toBe('MESH_ERR_TUF_INTENT_UNSIGNED');
        expect(err.message).toContain('not an object with a string kind');
      }
      expect(requests.filter((r) => r.startsWith('/tuf/targets/'))).toEqual([]);
    }
  });
});

describe('agent config: tuf.allowUnsignedIntent', () => {
  it('is a boolean under "tuf", absent by default, and a wrong value or key names the path', () => {
    expect(parseAgentConfig({}, 'agent.json').tuf).toBeUndefined();
    expect(parseAgentConfig({ tuf: { allowUnsignedIntent: true } }, 'agent.json').tuf).toEqual({ allowUnsignedIntent: true });
    expect(() => parseAgentConfig({ tuf: { allowUnsignedIntent: 'yes' } }, 'agent.json')).toThrow('agent.json: config/tuf/allowUnsignedIntent must be boolean');
    expect(() => parseAgentConfig({ tuf: { allowUnsigned: true } }, 'agent.json')).toThrow('agent.json: config/tuf must NOT have additional property "allowUnsigned"');
  });
});
