// One public key written two ways (hex in either case, or PEM) under two key ids is one key:
// it counts once toward a threshold (TUF spec 5.3.4: "each KEY MUST only contribute one
// SIGNATURE"), and a root listing it twice is refused outright, because the agents' TUF client
// (tufjs) counts key ids and would let one holder meet a threshold of two on every device.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Key, Metadata, MetadataKind, Root } from '@tufjs/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDataDir, type MeshanicsContext } from '../src/config/data-dir.js';
import { isTufError } from '../src/tuf/index.js';
import { loadKeyFile, signMetadata, type RoleKey } from '../src/tuf/keys.js';
import { keygen, signRoot } from '../src/tuf/offline.js';
import { aliasedKeyIds, thresholdStatus } from '../src/tuf/threshold.js';
import { startTestServer, tempDir, type TestServer } from './helpers.js';

/** `key` under another encoding of the same public key, with the key id its JSON hashes to (spec 4.2). */
function alias(key: Key, encode: (hex: string) => string): Key {
  const json = { keytype: key.keyType, scheme: key.scheme, keyval: { public: encode(String(key.keyVal.public)) } };
  return Key.fromJSON(crypto.createHash('sha256').update(canonicalize(json)).digest('hex'), json);
}
const upperHex = (hex: string) => hex.toUpperCase();
const pem = (hex: string) =>
  crypto
    .createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(hex, 'hex').toString('base64url') }, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' })
    .toString();

function holderKey(role: 'root' | 'targets'): RoleKey {
  return loadKeyFile(keygen(role, tempDir('meshanics-holder-')).privateKeyFile, role);
}

/** A root whose root role lists `keys` with threshold `k`, signed by `signers`. */
function rootListing(keys: Key[], k: number, signers: RoleKey[]): Metadata<Root> {
  const draft = new Root({ version: 2, specVersion: '1.0.31', expires: '2099-01-01T00:00:00Z', consistentSnapshot: true });
  for (const key of keys) draft.addKey(key, 'root');
  const json = draft.toJSON() as { roles: { root: { threshold: number } } };
  json.roles.root.threshold = k;
  const md = new Metadata(Root.fromJSON(json));
  for (const s of signers) signMetadata(md, s, true);
  return md;
}

describe('thresholdStatus counts one public key once, whatever its encoding', () => {
  for (const [what, encode] of [
    ['hex in upper case', upperHex],
    ['PEM', pem],
  ] as const) {
    it(`a key listed again as ${what} under its own key id, "signed" by both ids, is one signature of two`, () => {
      const a = holderKey('root');
      const a2 = alias(a.key, encode);
      expect(a2.keyID).not.toBe(a.key.keyID);
      const md = rootListing([a.key, a2], 2, [a, { ...a, key: a2 }]);
      // tufjs counts key ids: both verify, so its own check passes.
      expect(() => md.verifyDelegate('root', md)).not.toThrow();
      expect(thresholdStatus(md, 'root', md)).toMatchObject({ signedBy: [a.key.keyID], missing: [a2.keyID], met: false });
      expect(aliasedKeyIds(md.signed, 'root')).toEqual([{ keyid: a2.keyID, sameKeyAs: a.key.keyID }]);
    });
  }

  it('distinct keys still count separately', () => {
    const [a, b] = [holderKey('root'), holderKey('root')];
    const md = rootListing([a.key, b.key], 2, [a, b]);
    expect(thresholdStatus(md, 'root', md)).toMatchObject({ signedBy: [a.key.keyID, b.key.keyID], met: true });
    expect(aliasedKeyIds(md.signed, 'root')).toEqual([]);
  });
});

describe('tuf import refuses a root that lists one public key under two key ids', () => {
  let t: TestServer;
  let importer: MeshanicsContext;
  beforeAll(async () => {
    t = await startTestServer();
    importer = await openDataDir({ dataDir: t.dataDir, ...t.database });
  });
  afterAll(async () => {
    await importer?.close();
    await t?.close();
  });

  it('even when distinct keys meet both thresholds: devices would accept the next root signed by the aliased key alone', async () => {
    const transfer = tempDir('meshanics-transfer-');
    const onlineKeys = path.join(transfer, 'online-keys.json');
    fs.writeFileSync(onlineKeys, JSON.stringify(await importer.tuf.onlineKeys()));
    const holders = { A: keygen('root', tempDir()), B: keygen('root', tempDir()), C: keygen('root', tempDir()), T: keygen('targets', tempDir()) };
    const out = path.join(transfer, 'root-2.json');
    signRoot({
      rootKeyFiles: [holders.A.publicKeyFile, holders.B.publicKeyFile, holders.C.publicKeyFile],
      targetsKeyFiles: [holders.T.publicKeyFile],
      rootThreshold: 2,
      onlineKeysFile: onlineKeys,
      out,
    });
    // The root as a hostile or careless ceremony would write it: A listed a second time, in upper-case hex.
    const a = loadKeyFile(holders.A.privateKeyFile, 'root');
    const b = loadKeyFile(holders.B.privateKeyFile, 'root');
    const a2 = alias(a.key, upperHex);
    const json = JSON.parse(fs.readFileSync(out, 'utf8')) as { signed: { keys: Record<string, unknown>; roles: { root: { keyids: string[] } } } };
    json.signed.keys[a2.keyID] = a2.toJSON();
    json.signed.roles.root.keyids.push(a2.keyID);
    const md = Metadata.fromJSON(MetadataKind.Root, json as never);
    signMetadata(md, a, true);
    signMetadata(md, b, true);
    fs.writeFileSync(out, JSON.stringify(md.toJSON()));
    // What it would open on devices: a root v3 signed by A alone (under both ids) passes tufjs's check.
    const v3 = new Metadata(Root.fromJSON({ ...(md.signed.toJSON() as object), version: 3 }));
    signMetadata(v3, a, true);
    signMetadata(v3, { ...a, key: a2 }, true);
    expect(() => md.verifyDelegate('root', v3)).not.toThrow();

    const metadataBefore = fs.readdirSync(importer.layout.tufMetadataDir).sort();
    const rootBefore = fs.readFileSync(path.join(importer.layout.tufMetadataDir, 'root.json'));
    const err = await importer.tuf.importSigned({ root: fs.readFileSync(out) }).catch((e: unknown) => e);
    expect(isTufError(err) && err.code, String(err)).toBe('MESH_ERR_TUF_IMPORT_INVALID');
    expect((err as Error).message).toBe(
      `root v2 lists root key ${a2.keyID}, the same public key as ${a.key.keyID}: agents count key ids toward a threshold, so one holder would count twice (spec 5.3.4)`,
    );
    expect(fs.readdirSync(importer.layout.tufMetadataDir).sort()).toEqual(metadataBefore);
    expect(fs.readFileSync(path.join(importer.layout.tufMetadataDir, 'root.json'))).toEqual(rootBefore);
    expect(importer.tuf.versions().root).toBe(1);
  });
});
