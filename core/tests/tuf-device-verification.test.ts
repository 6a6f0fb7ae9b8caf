// @meshanics/core/tuf-verify: the device's TUF verification over files in memory, as the
// server's last gate runs it (issue 23). A one-key repository is built here with @tufjs/models
// (root, timestamp, snapshot, targets; consistent snapshots) and handed over as bytes.
import * as crypto from 'node:crypto';
import { canonicalize } from '@tufjs/canonical-json';
import { Key, Metadata, MetaFile, Root, Signature, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { describe, expect, it } from 'vitest';
import { jsonNestingDepth, MAX_METADATA_DEPTH, verifyAsDevice } from '../src/tuf/device-verification.js';

const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
const hex = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('hex');
const keyBody = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: hex } };
const key = new Key({ keyID: crypto.createHash('sha256').update(canonicalize(keyBody)).digest('hex'), keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: hex } });
const expires = new Date(Date.now() + 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z');

function signed(md: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
  (md as Metadata<Targets>).sign((bytes) => new Signature({ keyID: key.keyID, sig: crypto.sign(null, bytes, privateKey).toString('hex') }));
  return Buffer.from(canonicalize(md.toJSON()));
}

/** root v1, targets v1 holding one target with `custom`, snapshot v1, timestamp v1. */
function repository(custom: Record<string, unknown>): Map<string, Buffer> {
  const root = new Root({ version: 1, specVersion: '1.0.31', expires, consistentSnapshot: true });
  for (const role of ['root', 'targets', 'snapshot', 'timestamp']) root.addKey(key, role);
  const target = new TargetFile({ path: 'app/1.0.0/app', length: 3, hashes: { sha256: 'ab'.repeat(32) }, unrecognizedFields: { custom } as TargetFile['unrecognizedFields'] });
  const targets = signed(new Metadata(new Targets({ version: 1, specVersion: '1.0.31', expires, targets: { [target.path]: target } })));
  const snapshot = signed(
    new Metadata(new Snapshot({ version: 1, specVersion: '1.0.31', expires, meta: { 'targets.json': new MetaFile({ version: 1, length: targets.length }) } })),
  );
  const timestamp = signed(new Metadata(new Timestamp({ version: 1, specVersion: '1.0.31', expires, snapshotMeta: new MetaFile({ version: 1, length: snapshot.length }) })));
  return new Map([
    ['root.json', signed(new Metadata(root))],
    ['1.targets.json', targets],
    ['1.snapshot.json', snapshot],
    ['timestamp.json', timestamp],
  ]);
}

function verify(files: Map<string, Buffer>, expect: Parameters<typeof verifyAsDevice>[0]['targets'][number]['expect']) {
  return verifyAsDevice({ trustedRoot: files.get('root.json')!, file: (name) => files.get(name), targets: [{ path: 'app/1.0.0/app', expect }] });
}

describe('the device TUF verification over files in memory', () => {
  it('counts nesting without parsing, ignoring brackets inside strings and escaped quotes', () => {
    expect(jsonNestingDepth(Buffer.from('{"a":[[1],{"b":"[[[\\"{{"}]}'))).toBe(3);
    expect(jsonNestingDepth(Buffer.from(`{"a":${'['.repeat(3000)}${']'.repeat(3000)}}`))).toBe(3001);
  });

  it('finds a target with the length, hash and custom it was signed with', async () => {
    const custom = { meshanics: { kind: 'model', spec: { fileName: 'm.onnx' } } };
    await verify(repository(custom), { length: 3, sha256: 'ab'.repeat(32), custom });
    await expect(verify(repository(custom), { length: 3, sha256: 'ab'.repeat(32), custom: { other: true } })).rejects.toThrow(/reads a different "custom"/);
    await expect(verify(repository(custom), null)).rejects.toThrow(/still finds app\/1.0.0\/app/);
  });

  it(`refuses a file nested deeper than ${MAX_METADATA_DEPTH} levels before tuf-js parses it`, async () => {
    let deep: unknown = [];
    for (let i = 0; i < 100; i += 1) deep = [deep];
    await expect(verify(repository({ meshanics: { deep } }), undefined)).rejects.toThrow(/1\.targets\.json is nested \d+ levels deep; at most 64/);
  });

  it('refuses targets whose signature does not verify (one byte of the signed part changed)', async () => {
    const files = repository({ meshanics: { kind: 'model' } });
    files.set('1.targets.json', Buffer.from(files.get('1.targets.json')!.toString().replace('"model"', '"modem"')));
    // Same length: snapshot lists it without hashes, so the signature is what refuses it.
    await expect(verify(files, undefined)).rejects.toThrow(/signed by 0\/1 keys/);
  });

  it('stops reading metadata longer than the role that lists it allows, as a download would', async () => {
    const files = repository({ meshanics: { kind: 'model' } });
    // snapshot gives targets.json's length: one byte more is refused while "downloading", before
    // tuf-js parses or verifies it (the same error BaseFetcher raises while streaming).
    files.set('1.targets.json', Buffer.concat([files.get('1.targets.json')!, Buffer.from(' ')]));
    await expect(verify(files, undefined)).rejects.toThrow(/Max length reached/);
  });
});
