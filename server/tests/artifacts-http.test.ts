import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact, type PublishedArtifact } from '../src/catalog/publish.js';
import { decommissionDevice } from '../src/fleet/devices.js';
import { hashPrefixedTargetPath } from '@meshanics/core/contract';
import { certificateFromAnotherCa, httpsGet, provision, startTestServer, tempDir, type TestServer, type TlsIdentity } from './helpers.js';

let t: TestServer;
let device: TlsIdentity;
let blob: Buffer;
let published: PublishedArtifact;
let targetUrlPath: string;

beforeAll(async () => {
  t = await startTestServer();
  device = await provision(t.ctx, 'lab', 'http-1');
  blob = crypto.randomBytes(64 * 1024);
  const file = path.join(tempDir(), 'weights');
  fs.writeFileSync(file, blob);
  published = await publishArtifact(t.ctx, { file, name: 'weights', version: '1.0.0', kind: 'model' });
  targetUrlPath = `/tuf/targets/${hashPrefixedTargetPath(published.targetPath, published.sha256)}`;
});
afterAll(() => t.close());

const get = (p: string, headers: Record<string, string> = {}, tls: Partial<TlsIdentity> & { caPem: string } = device) => httpsGet(t.server.artifactsUrl, p, tls, headers);

async function handshakeError(tls: Partial<TlsIdentity> & { caPem: string }): Promise<string> {
  return get('/tuf/metadata/timestamp.json', {}, tls).then(
    (res) => `HTTP ${res.status}`,
    (err: Error) => `error ${err.message}`,
  );
}

describe('artifact HTTPS server', () => {
  it('serves TUF metadata and hash-prefixed targets to an enrolled device', async () => {
    const ts = await get('/tuf/metadata/timestamp.json');
    expect(ts.status).toBe(200);
    expect(ts.headers['content-type']).toBe('application/json');
    expect(JSON.parse(ts.body.toString()).signed._type).toBe('timestamp');
    const target = await get(targetUrlPath);
    expect(target.status).toBe(200);
    expect(target.body.equals(blob)).toBe(true);
    expect((await get('/tuf/metadata/9.root.json')).status).toBe(404);
    expect((await get('/other/path')).status).toBe(404);
  });

  it('resumes a download with Range: bytes=N- (206) and answers 416 past the end', async () => {
    const partial = await get(targetUrlPath, { Range: 'bytes=1000-' });
    expect(partial.status).toBe(206);
    expect(partial.headers['content-range']).toBe(`bytes 1000-${blob.length - 1}/${blob.length}`);
    expect(partial.body.equals(blob.subarray(1000))).toBe(true);
    const bounded = await get(targetUrlPath, { Range: 'bytes=10-19' });
    expect(bounded.status).toBe(206);
    expect(bounded.body.equals(blob.subarray(10, 20))).toBe(true);
    const beyond = await get(targetUrlPath, { Range: `bytes=${blob.length}-` });
    expect(beyond.status).toBe(416);
    expect(beyond.headers['content-range']).toBe(`bytes */${blob.length}`);
  });

  it('never serves anything outside its roots, whatever the path encoding or symlinks', async () => {
    const layout = t.ctx.layout;
    // A symlink inside the targets root that points at the CA key.
    fs.symlinkSync(layout.caKeyFile, path.join(layout.tufTargetsDir, 'leak'));
    fs.symlinkSync(layout.pkiDir, path.join(layout.tufTargetsDir, 'pkidir'));
    const attempts = [
      '/tuf/targets/../../../pki/ca.key',
      '/tuf/metadata/../../keys/root.pem',
      '/tuf/targets/%2e%2e/%2e%2e/%2e%2e/pki/ca.key',
      '/tuf/targets/..%2f..%2f..%2fpki%2fca.key',
      '/tuf/targets/weights%2f1.0.0',
      '/tuf/targets/..\\..\\..\\pki\\ca.key',
      '/tuf/targets/leak',
      '/tuf/targets/pkidir/ca.key',
      '/tuf/targets/',
      '/tuf/targets/weights',
      '/tuf/metadata/%00root.json',
    ];
    for (const p of attempts) {
      const res = await get(p);
      expect([400, 404], p).toContain(res.status);
      expect(res.body.toString(), p).not.toContain('PRIVATE KEY');
    }
  });

  it('completes no TLS handshake without a client certificate or with one from another CA', async () => {
    expect(await handshakeError({ caPem: device.caPem })).toMatch(/^error /);
    const forged = await certificateFromAnotherCa('http-1');
    expect(await handshakeError({ caPem: device.caPem, ...forged })).toMatch(/^error /);
  });

  it('refuses a decommissioned device with 403', async () => {
    const gone = await provision(t.ctx, 'lab', 'http-gone');
    expect((await get('/tuf/metadata/timestamp.json', {}, gone)).status).toBe(200);
    await decommissionDevice(t.ctx, { fleet: 'lab', name: 'http-gone' });
    const res = await get('/tuf/metadata/timestamp.json', {}, gone);
    expect(res.status).toBe(403);
  });
});
