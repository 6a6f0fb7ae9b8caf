// Offboarding removes every piece of trust and key material the agent holds, the kept copy of
// its last verified TUF root included, and leaves the OFFBOARDED marker.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { wipeIdentity } from '../src/identity/identity-store.js';
import { lastGoodRootFile } from '../src/tuf/trust-files.js';
import { tempDir } from './helpers.js';

describe('offboarding wipe', () => {
  it('removes the identity, the TUF trust state and its kept root copy, and the files the agent was started with', async () => {
    const dataDir = await tempDir('wipe');
    await mkdir(path.join(dataDir, 'identity', 'current'), { recursive: true });
    await writeFile(path.join(dataDir, 'identity', 'current', 'device.key'), 'key');
    await mkdir(path.join(dataDir, 'tuf'));
    await writeFile(path.join(dataDir, 'tuf', 'root.json'), '{}');
    await writeFile(lastGoodRootFile(path.join(dataDir, 'tuf')), '{}');
    const given = path.join(dataDir, 'given.key');
    await writeFile(given, 'key');

    await wipeIdentity(dataDir, [given], { fleet: 'lab', name: 'edge-1' });

    for (const gone of ['identity', 'tuf', 'tuf.root-last-good.json', 'given.key']) expect(existsSync(path.join(dataDir, gone)), gone).toBe(false);
    expect(existsSync(path.join(dataDir, 'OFFBOARDED'))).toBe(true);
  });
});
