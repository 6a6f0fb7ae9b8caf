// downloadVerified against a real HTTPS server with client-certificate verification on
// 127.0.0.1 (certificates made with the openssl CLI): full download, Range resume of a kept
// partial file, a corrupted partial file, a server that ignores Range, endless data, and an
// interrupted transfer whose received bytes must be on disk for the resume.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MeshError, type VerifiedTarget } from '../src/index.js';
import { createDeviceHttpsAgent, httpsGet } from '../src/transport/https-get.js';
import { downloadVerified } from '../src/transport/streaming-download.js';
import { tempDir } from './helpers.js';

const MiB = 1024 * 1024;
// Not a multiple of the 1 MiB write batch, so the last batch is a partial one.
const BODY = randomBytes(5 * MiB + 12_345);
const TARGET: VerifiedTarget = { targetPath: 'models/m.bin', length: BODY.length, sha256: createHash('sha256').update(BODY).digest('hex') };
const CUT = Math.floor(2.5 * MiB);

let server: https.Server;
let base: string;
let agent: https.Agent;
const ranges: (string | undefined)[] = [];
// Requests per connection, for the keep-alive race below.
const served = new WeakMap<object, number>();
let dropped = 0;

function openssl(dir: string, ...args: string[]) {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

beforeAll(async () => {
  const dir = await tempDir('download-pki');
  const ext = path.join(dir, 'san.ext');
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1\n');
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=test-ca', '-days', '1');
  for (const name of ['server', 'device']) {
    openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', ext);
  }
  const pem = (f: string) => readFileSync(path.join(dir, f));
  server = https.createServer({ key: pem('server.key'), cert: pem('server.crt'), ca: pem('ca.crt'), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    ranges.push(req.headers.range);
    const before = served.get(req.socket) ?? 0;
    served.set(req.socket, before + 1);
    if ((req.url === '/drop-reused' && before > 0) || req.url === '/drop-always') {
      // What a keep-alive timeout firing as the request arrives looks like to the client.
      dropped += 1;
      req.socket.destroy();
      return;
    }
    if (req.url === '/small' || req.url === '/drop-reused') {
      res.end('ok');
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (req.url === '/endless') {
      res.writeHead(200);
      res.end(Buffer.concat([BODY, randomBytes(2 * MiB)]));
    } else if (req.url === '/cut') {
      // Sends CUT bytes of the body, then drops the connection.
      res.writeHead(200, { 'content-length': BODY.length });
      res.write(BODY.subarray(0, CUT), () => setTimeout(() => res.socket?.destroy(), 200));
    } else if (req.url === '/file' && range) {
      const from = Number(range[1]);
      res.writeHead(206, { 'content-range': `bytes ${from}-${BODY.length - 1}/${BODY.length}`, 'content-length': BODY.length - from });
      res.end(BODY.subarray(from));
    } else {
      // '/file' without a Range, and '/norange', which ignores the header.
      res.writeHead(200, { 'content-length': BODY.length });
      res.end(BODY);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  agent = createDeviceHttpsAgent({ ca: pem('ca.crt'), cert: pem('device.crt'), key: pem('device.key') });
});

afterAll(async () => {
  agent?.destroy();
  await new Promise((resolve) => server?.close(resolve));
});

async function destination(): Promise<string> {
  return path.join(await tempDir('download'), 'staged');
}

function rejection(p: Promise<unknown>): Promise<MeshError> {
  return p.then(
    () => {
      throw new Error('expected the download to fail');
    },
    (err: unknown) => {
      expect(err).toBeInstanceOf(MeshError);
      return err as MeshError;
    },
  );
}

describe('downloadVerified', () => {
  it('writes the whole target, byte for byte, and checks it against the TUF length and sha256', async () => {
    const dest = await destination();
    const progress: number[] = [];
    const result = await downloadVerified({ agent, url: `${base}/file`, destination: dest, target: TARGET, onProgress: (done) => progress.push(done) });
    expect(result.resumedFrom).toBe(0);
    expect((await readFile(dest)).equals(BODY)).toBe(true);
    expect(progress.at(-1)).toBe(BODY.length);
  });

  it('resumes a kept partial file with a Range request for exactly the rest', async () => {
    const dest = await destination();
    await writeFile(dest, BODY.subarray(0, 3 * MiB + 1));
    ranges.length = 0;
    const result = await downloadVerified({ agent, url: `${base}/file`, destination: dest, target: TARGET });
    expect(ranges).toEqual([`bytes=${3 * MiB + 1}-`]);
    expect(result.resumedFrom).toBe(3 * MiB + 1);
    expect((await readFile(dest)).equals(BODY)).toBe(true);
  });

  it('a corrupted byte in the kept partial file fails the digest and removes the file', async () => {
    const dest = await destination();
    const partial = Buffer.from(BODY.subarray(0, 2 * MiB));
    partial[1000]! ^= 0xff;
    await writeFile(dest, partial);
    const err = await rejection(downloadVerified({ agent, url: `${base}/file`, destination: dest, target: TARGET }));
    expect(err.code).toBe('MESH_ERR_DIGEST_MISMATCH');
    await expect(stat(dest)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('starts over when the server ignores the Range header and answers 200', async () => {
    const dest = await destination();
    await writeFile(dest, BODY.subarray(0, MiB));
    await downloadVerified({ agent, url: `${base}/norange`, destination: dest, target: TARGET });
    expect((await readFile(dest)).equals(BODY)).toBe(true);
  });

  it('refuses a server that sends more than the trusted length (endless data)', async () => {
    const dest = await destination();
    const err = await rejection(downloadVerified({ agent, url: `${base}/endless`, destination: dest, target: TARGET }));
    expect(err.code).toBe('MESH_ERR_DIGEST_MISMATCH');
    expect(err.message).toContain(`more than the ${BODY.length} bytes`);
    // Never more than the trusted length on disk, whatever the server sent.
    expect((await stat(dest)).size).toBeLessThanOrEqual(BODY.length);
  });

  it('keeps every byte received before an interruption, so the resume asks only for the rest', async () => {
    const dest = await destination();
    const err = await rejection(downloadVerified({ agent, url: `${base}/cut`, destination: dest, target: TARGET }));
    expect(err.code).toBe('MESH_ERR_DOWNLOAD_FAILED');
    // CUT is not a multiple of the write batch: the batch being filled was written too.
    const kept = await readFile(dest);
    expect(kept.length).toBe(CUT);
    expect(kept.equals(BODY.subarray(0, CUT))).toBe(true);
    ranges.length = 0;
    const result = await downloadVerified({ agent, url: `${base}/file`, destination: dest, target: TARGET });
    expect(ranges).toEqual([`bytes=${CUT}-`]);
    expect(result.resumedFrom).toBe(CUT);
    expect((await readFile(dest)).equals(BODY)).toBe(true);
  });

  it('on a slow disk, pauses the response while a write is in flight: one write at a time, in order, each at most a batch and a record, progress still reported', async () => {
    // The body is read in flowing mode; only pausing it keeps the held bytes bounded and the
    // writes in order. Every FileHandle write is slowed down here (a disk slower than TLS).
    const probe = await open(await destination(), 'w');
    const proto = Object.getPrototypeOf(probe) as { writev: (buffers: Buffer[], position?: number) => Promise<unknown> };
    await probe.close();
    const original = proto.writev;
    let inFlight = 0;
    let maxInFlight = 0;
    const sizes: number[] = [];
    proto.writev = async function (this: unknown, buffers: Buffer[], position?: number) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      sizes.push(buffers.reduce((n, b) => n + b.length, 0));
      try {
        await new Promise((resolve) => setTimeout(resolve, 300));
        return await original.call(this, buffers, position);
      } finally {
        inFlight--;
      }
    };
    const progress: number[] = [];
    try {
      const dest = await destination();
      await downloadVerified({ agent, url: `${base}/file`, destination: dest, target: TARGET, onProgress: (done) => progress.push(done) });
      expect((await readFile(dest)).equals(BODY)).toBe(true);
    } finally {
      proto.writev = original;
    }
    expect(maxInFlight).toBe(1);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(BODY.length);
    for (const size of sizes) expect(size).toBeLessThanOrEqual(MiB + 64 * 1024);
    // Six writes of 300 ms: progress at the first batch, again after a second while batches
    // wait for the disk, and at the end.
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress.at(-1)).toBe(BODY.length);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
  });
});

describe('httpsGet on a kept-alive connection', () => {
  const body = async (url: string) => {
    const res = await httpsGet(agent, url);
    let text = '';
    for await (const chunk of res) text += String(chunk);
    return { status: res.statusCode, text };
  };

  it('sends a GET again on a new connection when the server drops the reused socket before answering', async () => {
    dropped = 0;
    expect(await body(`${base}/small`)).toEqual({ status: 200, text: 'ok' });
    // The same idle keep-alive socket carries this one, and the server drops it unanswered.
    expect(await body(`${base}/drop-reused`)).toEqual({ status: 200, text: 'ok' });
    expect(dropped).toBe(1);
  });

  it('does not retry a request whose fresh connection is dropped: the error reaches the caller', async () => {
    const fresh = createDeviceHttpsAgent({ ...agent.options } as never);
    try {
      dropped = 0;
      await expect(httpsGet(fresh, `${base}/drop-always`)).rejects.toMatchObject({ code: 'ECONNRESET' });
      expect(dropped).toBe(1);
    } finally {
      fresh.destroy();
    }
  });
});
