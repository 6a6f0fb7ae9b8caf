// A download receives ~65,000 TLS records per GiB, each a fresh Buffer outside the V8 heap.
// Once hashed and written they are garbage, but their memory only goes back when V8 collects
// the small Buffer objects that own it, and V8 collects the young generation when the young
// generation is full, not when outside memory grows: the agent's RSS rose by ~25-35 MiB of
// dead records during every install (docs/benchmarks.md, agent peak RSS). A scavenge (minor
// GC, well under a millisecond with the agent's small young generation) every few MiB
// received frees them as the download goes.
//
// Node exposes no GC call without --expose-gc at start-up. The systemd unit
// (core/systemd/meshanics-agent.service) passes the flag in NODE_OPTIONS, and so do the
// benchmarks (they start the agent with the unit's flags). Started without it (`node
// agent-cli.js` by hand, the end-to-end tests) the download runs without scavenges: the same
// bytes, only a higher peak RSS. The flag is deliberately not switched on at run time
// (v8.setFlagsFromString): Node documents flag changes after start-up as undefined behaviour.

type GcFunction = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void;

let gc: GcFunction | null | undefined;

function gcFunction(): GcFunction | null {
  if (gc === undefined) {
    const exposed = (globalThis as { gc?: unknown }).gc;
    gc = typeof exposed === 'function' ? (exposed as GcFunction) : null;
  }
  return gc;
}

/** Collects the young generation now, if node was started with --expose-gc; never throws. */
export function collectYoungGarbage(): void {
  const fn = gcFunction();
  if (!fn) return;
  try {
    fn({ type: 'minor' });
  } catch {
    gc = null;
  }
}
