// A download receives ~65,000 TLS records per GiB, each a fresh Buffer outside the V8 heap.
// Once hashed and written they are garbage, but their memory only goes back when V8 collects
// the small Buffer objects that own it, and V8 collects the young generation when the young
// generation is full, not when outside memory grows: the agent's RSS rose by ~25-35 MiB of
// dead records during every install (docs/benchmarks.md, agent peak RSS). A scavenge (minor
// GC, well under a millisecond with the agent's small young generation) every few MiB
// received frees them as the download goes.
//
// Node exposes no GC call without --expose-gc at start-up. The systemd unit
// (core/systemd/meshanics-agent.service) passes the flag in NODE_OPTIONS, so an installed
// agent uses the global gc. Started any other way (`node agent-cli.js`, as the tests and the
// benchmarks do, or its bin by hand) the flag is set here at run time, the way Jest's leak
// detector does, and the function is taken from a fresh context. Where that does not work
// the download simply runs without it (RSS as before, nothing else changes).
import v8 from 'node:v8';
import vm from 'node:vm';

type GcFunction = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void;

let gc: GcFunction | null | undefined;

function gcFunction(): GcFunction | null {
  if (gc !== undefined) return gc;
  try {
    const existing = (globalThis as { gc?: unknown }).gc;
    if (typeof existing === 'function') {
      gc = existing as GcFunction;
    } else {
      v8.setFlagsFromString('--expose-gc');
      const fn = vm.runInNewContext('gc') as unknown;
      gc = typeof fn === 'function' ? (fn as GcFunction) : null;
    }
  } catch {
    gc = null;
  }
  return gc;
}

/** Collects the young generation now, if this process allows it; never throws. */
export function collectYoungGarbage(): void {
  const fn = gcFunction();
  if (!fn) return;
  try {
    fn({ type: 'minor' });
  } catch {
    gc = null;
  }
}
