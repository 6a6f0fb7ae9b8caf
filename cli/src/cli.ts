#!/usr/bin/env node
import { main } from './index.js';

// A closed pipe (`meshanics ... | head`) ends output quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`meshanics: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
