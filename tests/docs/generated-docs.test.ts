import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('generated documentation', () => {
  it('docs/device-api.md matches the device contract (.proto)', async () => {
    const result = await run(process.execPath, ['scripts/gen-device-api-docs.mjs', '--check'], { cwd: ROOT }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stderr: string }) => ({ code: e.code, out: e.stderr }),
    );
    expect(result.out).toContain('up to date');
    expect(result.code).toBe(0);
  });

  it('docs/operator-api-reference.md matches the OpenAPI document the server serves', async () => {
    const result = await run(process.execPath, ['scripts/gen-operator-api-docs.mjs', '--check'], { cwd: ROOT }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stderr: string }) => ({ code: e.code, out: e.stderr }),
    );
    expect(result.out).toContain('up to date');
    expect(result.code).toBe(0);
  });
});
