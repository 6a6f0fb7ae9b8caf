// A TargetSource over a local directory, for plugin tests (ours and vendors'). It stands in
// for the TUF repository, which needs a server; it checks length and sha256 exactly like
// the real source, so a plugin test still sees verified bytes only. Never use it on a device.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MeshError } from '../errors.js';
import type { VerifiedTarget } from '../plugin.js';
import type { TargetSource } from '../target-source.js';

export class LocalTargetSource implements TargetSource {
  readonly dir: string;
  /** Every target path resolved, in order (tests assert nothing was fetched). */
  readonly resolved: string[] = [];

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Stores bytes as a target and returns what "signed metadata" would say about them. */
  async publish(targetPath: string, bytes: Buffer | string, signed?: VerifiedTarget['signed']): Promise<VerifiedTarget> {
    const data = Buffer.from(bytes);
    const file = path.join(this.dir, targetPath);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, data);
    const target: VerifiedTarget = {
      targetPath,
      length: data.length,
      sha256: createHash('sha256').update(data).digest('hex'),
      ...(signed ? { signed } : {}),
    };
    await fs.writeFile(`${file}.meta.json`, JSON.stringify(target));
    return target;
  }

  async resolve(targetPath: string): Promise<VerifiedTarget> {
    this.resolved.push(targetPath);
    try {
      return JSON.parse(await fs.readFile(path.join(this.dir, `${targetPath}.meta.json`), 'utf8')) as VerifiedTarget;
    } catch {
      throw new MeshError('MESH_ERR_TUF_TARGET_UNKNOWN', `target "${targetPath}" is not published`);
    }
  }

  async fetch(target: VerifiedTarget, destination: string, options: { onProgress: (done: number, total: number) => void }): Promise<void> {
    const data = await fs.readFile(path.join(this.dir, target.targetPath));
    const sha256 = createHash('sha256').update(data).digest('hex');
    if (data.length !== target.length || sha256 !== target.sha256) {
      throw new MeshError('MESH_ERR_DIGEST_MISMATCH', `${target.targetPath}: bytes do not match the verified target`);
    }
    await fs.writeFile(destination, data, { mode: 0o600 });
    options.onProgress(data.length, target.length);
  }
}
