// tsc writes dist/cli.js without the executable bit; the `meshanics` bin link needs it.
import { chmodSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('./dist/cli.js', import.meta.url));
if (existsSync(bin)) chmodSync(bin, 0o755);
