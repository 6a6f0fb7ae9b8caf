// Preloaded (NODE_OPTIONS=--import) into `serve --workers` by serve-workers.test.ts: the worker
// whose slot the file named by MESHANICS_TEST_HANG_START holds stops itself with SIGSTOP before
// any of the server runs, as a worker hung while starting would be, and only once (the file is
// removed), so its replacement starts normally. The server's code is not changed to make it hang.
import { readFileSync, rmSync } from 'node:fs';

const file = process.env.MESHANICS_TEST_HANG_START;
const slot = process.env.MESHANICS_WORKER_SLOT;
if (file && slot) {
  let wanted;
  try {
    wanted = readFileSync(file, 'utf8').trim();
  } catch {
    wanted = undefined;
  }
  if (wanted === slot) {
    rmSync(file, { force: true });
    process.kill(process.pid, 'SIGSTOP');
  }
}
