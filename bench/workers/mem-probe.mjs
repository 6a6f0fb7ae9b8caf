// Preloaded into a server under test (node --expose-gc --import this file) by the conn-memory
// suite: on SIGUSR2 it collects garbage (twice, a turn of the event loop apart, so objects
// freed by finalizers go too) and prints one JSON line with process.memoryUsage(), and with
// BENCH_HEAPSNAPSHOT_DIR set it also writes a heap snapshot there (v8.writeHeapSnapshot) and
// names it in the line. The same file in the real server and the echo server, so both are
// measured the same way.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';

let seq = 0;
process.on('SIGUSR2', () => {
  void (async () => {
    const n = ++seq;
    for (let i = 0; i < 2; i++) {
      globalThis.gc?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    const usage = process.memoryUsage();
    // The kernel's split of RSS: anonymous memory (heaps: V8's, malloc's) against file pages
    // (code and libraries touched, mapped files such as SQLite's WAL index) and shared memory.
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    const kernel = { rssAnon: kb('RssAnon'), rssFile: kb('RssFile'), rssShmem: kb('RssShmem') };
    const dir = process.env.BENCH_HEAPSNAPSHOT_DIR;
    const snapshot = dir ? v8.writeHeapSnapshot(path.join(dir, `${process.env.BENCH_HEAPSNAPSHOT_LABEL ?? 'process'}-${process.pid}-${n}.heapsnapshot`)) : undefined;
    process.stderr.write(
      `${JSON.stringify({ msg: 'mem-probe', seq: n, gcExposed: typeof globalThis.gc === 'function', ...usage, ...kernel, ...(snapshot ? { snapshot } : {}) })}\n`,
    );
  })();
});
