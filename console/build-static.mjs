// Copies the console's static files (index.html, CSS) next to what tsc compiled into dist/.
// `npm run build` (root or console) runs it after `tsc -b`; it is idempotent and needs no network.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const staticDir = fileURLToPath(new URL('./static/', import.meta.url));
const dist = fileURLToPath(new URL('./dist/', import.meta.url));
mkdirSync(dist, { recursive: true });
for (const name of readdirSync(staticDir)) copyFileSync(staticDir + name, dist + name);
