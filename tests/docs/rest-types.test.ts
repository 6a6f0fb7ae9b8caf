import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('generated REST types', () => {
  it('cli/src/generated/rest-api.ts matches the OpenAPI document the server serves', async () => {
    const result = await run(process.execPath, ['scripts/gen-rest-types.mjs', '--check'], { cwd: ROOT }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stderr: string }) => ({ code: e.code, out: e.stderr }),
    );
    expect(result.out).toContain('up to date');
    expect(result.code).toBe(0);
  });
});
