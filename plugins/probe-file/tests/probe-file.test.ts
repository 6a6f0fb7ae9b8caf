import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileSchema, runProbe } from '@meshanics/core';
import { createTestAgent, testAssignment } from '@meshanics/core/testing';
import FileProbePlugin, { FILE_PROBE_SPEC_SCHEMA } from '../src/index.js';

let dir: string;
const log = pino({ level: 'silent' });

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meshanics-probe-file-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function probe(file: string, fields: { attempts?: number; initialDelaySeconds?: number } = {}) {
  const { agent } = await createTestAgent([new FileProbePlugin()]);
  const a = testAssignment(
    { targetPath: 'x', length: 0, sha256: '0'.repeat(64) },
    {
      kind: 'model',
      probe: { type: 'file', specJson: JSON.stringify({ path: file }), timeoutSeconds: 1, attempts: fields.attempts ?? 1, initialDelaySeconds: fields.initialDelaySeconds ?? 0 },
    },
  );
  return runProbe(agent.hooks, a, { path: file }, log, new AbortController().signal);
}

describe('file probe', () => {
  it('is healthy when the readiness file exists and is non-empty', async () => {
    const f = path.join(dir, 'ready');
    await writeFile(f, 'yes');
    expect((await probe(f)).healthy).toBe(true);
  });

  it('is unhealthy for a missing file, an empty file, a directory and a symlink', async () => {
    const empty = path.join(dir, 'empty');
    await writeFile(empty, '');
    const directory = path.join(dir, 'a-dir');
    await mkdir(directory);
    const target = path.join(dir, 'real');
    await writeFile(target, 'x');
    const link = path.join(dir, 'link');
    await symlink(target, link);
    const details = [];
    for (const f of [path.join(dir, 'missing'), empty, directory, link]) {
      const outcome = await probe(f);
      expect(outcome.healthy).toBe(false);
      details.push(outcome.attempts[0]);
    }
    expect(details[0]).toContain('does not exist');
    expect(details[1]).toContain('is empty');
    expect(details[2]).toContain('is not a regular file');
    expect(details[3]).toContain('is not a regular file');
  });

  it('becomes healthy when the file appears before the last attempt', async () => {
    const f = path.join(dir, 'later');
    setTimeout(() => void writeFile(f, 'now'), 500);
    const outcome = await probe(f, { attempts: 3 });
    expect(outcome.healthy).toBe(true);
    expect(outcome.attempts[0]).toContain('does not exist');
  });

  it('waits the initial delay before the first check', async () => {
    const f = path.join(dir, 'delayed');
    setTimeout(() => void writeFile(f, 'now'), 300);
    const started = Date.now();
    const outcome = await probe(f, { initialDelaySeconds: 1 });
    expect(outcome.healthy).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(990);
  });

  it('accepts only clean absolute paths', () => {
    const validate = compileSchema(FILE_PROBE_SPEC_SCHEMA, 'probe/spec');
    expect(validate({ path: 'relative/ready' }).ok).toBe(false);
    expect(validate({ path: '/run/../etc/shadow' }).ok).toBe(false);
    expect(validate({ path: '/run/app/ready' }).ok).toBe(true);
  });
});
