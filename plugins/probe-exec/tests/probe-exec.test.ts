import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileSchema, runProbe, type Assignment } from '@meshanics/core';
import { createTestAgent, testAssignment } from '@meshanics/core/testing';
import ExecProbePlugin, { EXEC_PROBE_SPEC_SCHEMA } from '../src/index.js';

let dir: string;
const log = pino({ level: 'silent' });

async function script(name: string, body: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, 0o755);
  return file;
}

/** Gone means no such process, or a zombie nobody has reaped yet (it runs nothing). */
function alive(pid: number): boolean {
  if (!existsSync(`/proc/${pid}/stat`)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function probe(argv: string[], allowlisted: string[], probeFields: Partial<Assignment['probe']> = {}) {
  const { agent } = await createTestAgent([new ExecProbePlugin()], { allowlist: { execBinaries: allowlisted } });
  const a = testAssignment(
    { targetPath: 'x', length: 0, sha256: '0'.repeat(64) },
    {
      kind: 'model',
      probe: { type: 'exec', specJson: JSON.stringify({ argv }), timeoutSeconds: 2, attempts: 1, initialDelaySeconds: 0, ...probeFields },
    },
  );
  return runProbe(agent.hooks, a, { argv }, log, new AbortController().signal);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meshanics-probe-exec-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('exec probe', () => {
  it('is healthy when the allowlisted binary exits 0', async () => {
    const ok = await script('ok.sh', 'exit 0');
    const outcome = await probe([ok], [ok]);
    expect(outcome.healthy).toBe(true);
    expect(outcome.attempts[0]).toContain('exit 0');
  });

  it('is unhealthy on a non-zero exit and puts a capped tail of the output in the reason', async () => {
    const bad = await script('bad.sh', 'i=0; while [ $i -lt 2000 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 3');
    const outcome = await probe([bad], [bad]);
    expect(outcome.healthy).toBe(false);
    expect(outcome.attempts[0]).toContain('exit 3');
    expect(outcome.attempts[0]).toContain('line 1999');
    expect(outcome.attempts[0]).not.toContain('line 10\n');
    expect(outcome.attempts[0]!.length).toBeLessThan(1500);
  });

  it('passes its argv to the binary verbatim, without a shell', async () => {
    const out = path.join(dir, 'argv.txt');
    const echo = await script('argv.sh', `for a in "$@"; do echo "[$a]"; done > ${out}`);
    await probe([echo, '$(touch /tmp/pwned)', 'a b', ';', '*'], [echo]);
    expect(await readFile(out, 'utf8')).toBe('[$(touch /tmp/pwned)]\n[a b]\n[;]\n[*]\n');
  });

  it('runs with a minimal environment', async () => {
    const out = path.join(dir, 'env.txt');
    const envScript = await script('env.sh', `env > ${out}`);
    process.env.MESHANICS_SECRET_FOR_TEST = 'leak';
    try {
      await probe([envScript], [envScript]);
    } finally {
      delete process.env.MESHANICS_SECRET_FOR_TEST;
    }
    const env = await readFile(out, 'utf8');
    expect(env).not.toContain('MESHANICS_SECRET_FOR_TEST');
    expect(env).toContain('PATH=/usr/sbin:/usr/bin:/sbin:/bin');
  });

  it('refuses a binary that is not on the allowlist, naming the rule', async () => {
    const ok = await script('ok2.sh', 'exit 0');
    const outcome = await probe([ok], ['/usr/bin/true']);
    expect(outcome.healthy).toBe(false);
    expect(outcome.attempts[0]).toContain('is not on the allowlist (allowlist.execBinaries)');
  });

  it('refuses a relative path and a path with ".." even if a listed binary is behind it', async () => {
    const validate = compileSchema(EXEC_PROBE_SPEC_SCHEMA, 'probe/spec');
    const relative = validate({ argv: ['bin/health'] });
    expect(relative.ok).toBe(false);
    expect(!relative.ok && relative.errors[0]).toBe('probe/spec/argv/0 must match pattern "^/"');
    const ok = await script('ok3.sh', 'exit 0');
    const traversal = `${dir}/sub/../ok3.sh`;
    const outcome = await probe([traversal], [ok, traversal]);
    expect(outcome.healthy).toBe(false);
    expect(outcome.attempts[0]).toContain('must be a clean absolute path');
  });

  it('kills a probe that hangs and forks, and its children, at the timeout', async () => {
    const pids = path.join(dir, 'pids.txt');
    const hang = await script('hang.sh', `sleep 300 & echo $! > ${pids}; echo $$ >> ${pids}; sleep 300`);
    const started = Date.now();
    const outcome = await probe([hang], [hang], { timeoutSeconds: 1 });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(outcome.healthy).toBe(false);
    expect(outcome.attempts[0]).toMatch(/timed out/);
    const [child, parent] = (await readFile(pids, 'utf8')).trim().split('\n').map(Number);
    await new Promise((r) => setTimeout(r, 200));
    expect(alive(parent!)).toBe(false);
    expect(alive(child!)).toBe(false);
  });

  it('kills what a healthy probe left running in the background', async () => {
    const pids = path.join(dir, 'bg.txt');
    const bg = await script('bg.sh', `sleep 300 > /dev/null 2>&1 & echo $! > ${pids}; exit 0`);
    const outcome = await probe([bg], [bg]);
    expect(outcome.healthy).toBe(true);
    const child = Number((await readFile(pids, 'utf8')).trim());
    await new Promise((r) => setTimeout(r, 200));
    expect(alive(child)).toBe(false);
  });
});
