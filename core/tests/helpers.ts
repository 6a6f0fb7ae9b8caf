import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';
import type { Assignment, VerifiedTarget } from '../src/index.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

export async function tempDir(label = 'core'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `meshanics-${label}-`));
  dirs.push(dir);
  return dir;
}

let counter = 0;
export function makeAssignment(target: VerifiedTarget, overrides: Partial<Assignment> = {}): Assignment {
  counter += 1;
  return {
    assignmentId: `a-${counter}-${Math.random().toString(16).slice(2, 8)}`,
    rolloutId: '',
    kind: 'fake',
    name: 'thing',
    version: `v${counter}`,
    targetPath: target.targetPath,
    expectedSha256: target.sha256,
    expectedLength: target.length,
    specJson: '{}',
    probe: { type: 'fake-probe', specJson: '{"healthyFromAttempt":1}', timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    ...overrides,
  };
}
