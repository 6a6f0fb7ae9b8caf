// The rollout event streams' shared snapshots (api/rollout-snapshots.ts): one computation for
// every stream of a rollout, and none again before ten times what the last one cost. The
// computation here is a function the test controls, and the clock is the test's: what is
// under test is when a snapshot is taken, which a real rollout detail would only blur.
import { describe, expect, it } from 'vitest';
import { RolloutSnapshots, SPACING_FACTOR } from '../src/api/rollout-snapshots.js';

function fixture(intervalMs = 1000) {
  let clock = 0;
  let costMs = 5;
  const calls: string[] = [];
  const snapshots = new RolloutSnapshots(
    async (id, view) => {
      calls.push(`${view}:${id}`);
      clock += costMs;
      if (id === 'broken') throw new Error('database gone');
      return { id, view, n: calls.length };
    },
    intervalMs,
    () => clock,
  );
  return {
    snapshots,
    calls,
    advance: (ms: number) => void (clock += ms),
    setCost: (ms: number) => void (costMs = ms),
  };
}

describe('rollout snapshots shared by event streams', () => {
  it('computes once for streams polling the same rollout and view together', async () => {
    const f = fixture();
    const [a, b] = await Promise.all([f.snapshots.get('r1', 'detail'), f.snapshots.get('r1', 'detail')]);
    expect(a).toBe(b);
    expect(f.calls).toEqual(['detail:r1']);
    // Another view or another rollout is another snapshot.
    await f.snapshots.get('r1', 'summary');
    await f.snapshots.get('r2', 'detail');
    expect(f.calls).toEqual(['detail:r1', 'summary:r1', 'detail:r2']);
  });

  it('takes a cheap snapshot again one interval after the last began, so a stream polling every interval gets a new one each time', async () => {
    const f = fixture();
    await f.snapshots.get('r1', 'detail'); // began at 0, took 5 ms
    f.advance(994); // 999 ms after it began
    await f.snapshots.get('r1', 'detail');
    expect(f.calls).toHaveLength(1);
    f.advance(1); // 1000 ms after it began, 995 after it ended
    expect(JSON.parse(await f.snapshots.get('r1', 'detail')).n).toBe(2);
  });

  it('forgets a rollout’s snapshots on demand (after an action), so the next poll sees the new state', async () => {
    const f = fixture();
    await f.snapshots.get('r1', 'detail');
    await f.snapshots.get('r1', 'summary');
    f.snapshots.forget('r1');
    await f.snapshots.get('r1', 'detail');
    await f.snapshots.get('r1', 'summary');
    expect(f.calls).toEqual(['detail:r1', 'summary:r1', 'detail:r1', 'summary:r1']);
  });

  it(`waits ${SPACING_FACTOR} times the cost of an expensive snapshot before the next`, async () => {
    const f = fixture();
    f.setCost(800);
    await f.snapshots.get('r1', 'detail');
    f.advance(SPACING_FACTOR * 800 - 1);
    await f.snapshots.get('r1', 'detail');
    expect(f.calls).toHaveLength(1);
    f.advance(1);
    await f.snapshots.get('r1', 'detail');
    expect(f.calls).toHaveLength(2);
  });

  it('keeps no failed snapshot: the next poll tries again', async () => {
    const f = fixture();
    await expect(f.snapshots.get('broken', 'detail')).rejects.toThrow('database gone');
    await expect(f.snapshots.get('broken', 'detail')).rejects.toThrow('database gone');
    expect(f.calls).toEqual(['detail:broken', 'detail:broken']);
  });

  it('forgets a rollout’s snapshots when its last stream closes, not before', async () => {
    const f = fixture();
    f.snapshots.open('r1');
    f.snapshots.open('r1');
    await f.snapshots.get('r1', 'detail');
    f.snapshots.close('r1');
    await f.snapshots.get('r1', 'detail');
    expect(f.calls).toHaveLength(1);
    f.snapshots.close('r1');
    await f.snapshots.get('r1', 'detail');
    expect(f.calls).toHaveLength(2);
  });
});
