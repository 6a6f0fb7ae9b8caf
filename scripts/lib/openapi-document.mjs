// The OpenAPI document the operator REST API serves, read from a server built in this checkout
// (`npm run build`) on a throwaway data dir: the one source the API reference and the REST
// types are generated from.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export async function openApiDocument() {
  const { initDataDir, buildApi } = await import(path.join(ROOT, 'server', 'dist', 'index.js'));
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meshanics-openapi-'));
  try {
    const ctx = await initDataDir({ dataDir: dir });
    const app = buildApi(ctx);
    try {
      return (await app.inject({ method: 'GET', url: '/api/v1/openapi.json' })).json();
    } finally {
      await app.close();
      await ctx.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Writes OUT, or with --check exits 1 when it differs from TEXT; names the command that regenerates it. */
export async function writeOrCheck(out, text, command) {
  const rel = path.relative(ROOT, out);
  if (process.argv.includes('--check')) {
    const current = await readFile(out, 'utf8').catch(() => '');
    if (current !== text) {
      console.error(`${rel} is out of date: run ${command}`);
      process.exit(1);
    }
    console.log(`${rel} is up to date`);
  } else {
    await writeFile(out, text);
    console.log(`wrote ${out}`);
  }
}
