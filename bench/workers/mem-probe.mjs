// Preloaded into a server under test (node --expose-gc --import this file) by the conn-memory
// suite: on SIGUSR2 it collects garbage (twice, a turn of the event loop apart, so objects
// freed by finalizers go too) and prints one JSON line with process.memoryUsage(), and with
// BENCH_HEAPSNAPSHOT_DIR set it also writes a heap snapshot there (v8.writeHeapSnapshot) and
// names it in the line. The same file in the real server and the echo server, so both are
// measured the same way.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import v8 from 'node:v8';

// BENCH_MALLOC_ADDON=path of a tiny N-API addon with info() (glibc's malloc_info XML) and
// trim() (malloc_trim(0)): diagnostic only (docs/benchmarks.md, section 8). The line then also
// says what glibc's arenas hold in use and free, and RssAnon after giving the free pages back.
const mallocx = process.env.BENCH_MALLOC_ADDON ? createRequire(import.meta.url)(process.env.BENCH_MALLOC_ADDON) : undefined;

/** Totals of malloc_info()'s XML: bytes the arenas took from the system, free in them, and mmapped chunks. */
function mallocTotals() {
  const xml = mallocx.info();
  const tail = xml.slice(xml.lastIndexOf('</heap>'));
  const total = (type) => Number(new RegExp(`<total type="${type}" count="\\d+" size="(\\d+)"/>`).exec(tail)?.[1] ?? NaN);
  const system = Number(/<system type="current" size="(\d+)"\/>/.exec(tail)?.[1] ?? NaN);
  const free = total('fast') + total('rest');
  const mmap = total('mmap');
  return { mallocSystem: system, mallocFree: free, mallocMmap: mmap, mallocInUse: system - free + mmap, mallocArenas: (xml.match(/<heap nr=/g) ?? []).length };
}

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
    const smapsDir = process.env.BENCH_SMAPS_DIR;
    const smaps = (when) =>
      smapsDir && writeFileSync(path.join(smapsDir, `${path.basename(process.argv[1] ?? 'node')}-${process.pid}-${n}-${when}`), readFileSync('/proc/self/smaps'));
    smaps('before');
    let malloc = {};
    if (mallocx) {
      malloc = mallocTotals();
      mallocx.trim();
      smaps('trimmed');
      malloc.rssAnonTrimmed = Number(/^RssAnon:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) * 1024;
    }
    // V8's committed size per space (a young generation grown under a burst of allocation stays committed).
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((sp) => [sp.space_name, sp.space_size]));
    const dir = process.env.BENCH_HEAPSNAPSHOT_DIR;
    const snapshot = dir ? v8.writeHeapSnapshot(path.join(dir, `${process.env.BENCH_HEAPSNAPSHOT_LABEL ?? 'process'}-${process.pid}-${n}.heapsnapshot`)) : undefined;
    process.stderr.write(
      `${JSON.stringify({ msg: 'mem-probe', seq: n, gcExposed: typeof globalThis.gc === 'function', ...usage, ...kernel, ...malloc, spaces, ...(snapshot ? { snapshot } : {}) })}\n`,
    );
  })();
});
