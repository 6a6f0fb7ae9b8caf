// Progression steps after status reports are coalesced per rollout: one running, one waiting,
// and a report never returns before a step that started after it has finished.
import { describe, expect, it } from 'vitest';
import { silentLogger, type Logger } from '../src/observability/log.js';
import { RolloutDriveQueue } from '../src/rollouts/drive-queue.js';

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('RolloutDriveQueue', () => {
  it('runs one step for a burst of reports that arrive while a step is running, after the running one', async () => {
    const steps: Array<{ id: string; startedAt: number }> = [];
    const gates = [gate(), gate()];
    let clock = 0;
    const queue = new RolloutDriveQueue(async (id) => {
      steps.push({ id, startedAt: ++clock });
      await gates[steps.length - 1]!.opened;
    }, silentLogger());

    const first = queue.request('r1');
    const burst = Array.from({ length: 50 }, () => queue.request('r1'));
    const requestedAt = clock;
    await Promise.resolve();
    expect(steps).toHaveLength(1);

    let burstDone = false;
    void Promise.all(burst).then(() => (burstDone = true));
    gates[0]!.open();
    await first;
    await new Promise((r) => setTimeout(r, 5));
    // The burst is not answered by the step that was already running when it arrived.
    expect(burstDone).toBe(false);
    expect(steps).toHaveLength(2);
    expect(steps[1]!.startedAt).toBeGreaterThan(requestedAt);

    gates[1]!.open();
    await Promise.all(burst);
    expect(steps).toHaveLength(2);

    // Idle again: the next report starts a step of its own at once.
    gates.push(gate());
    const later = queue.request('r1');
    expect(steps).toHaveLength(3);
    gates[2]!.open();
    await later;
  });

  it('keeps rollouts apart and never rejects a report because a step failed', async () => {
    const errors: unknown[] = [];
    // Only error() is called on this path.
    const logger = { error: (obj: unknown) => void errors.push(obj) } as unknown as Logger;
    const ran: string[] = [];
    const queue = new RolloutDriveQueue(async (id) => {
      ran.push(id);
      if (id === 'bad') throw new Error('database unavailable');
    }, logger);
    await Promise.all([queue.request('good'), queue.request('bad')]);
    expect(ran.sort()).toEqual(['bad', 'good']);
    expect(errors).toHaveLength(1);
  });

  it('spaces back-to-back steps of one rollout by the minimum interval, start to start', async () => {
    const starts: number[] = [];
    const queue = new RolloutDriveQueue(
      async () => {
        starts.push(performance.now());
        await new Promise((r) => setTimeout(r, 10));
      },
      silentLogger(),
      150,
    );
    const first = queue.request('r1');
    const second = queue.request('r1');
    await Promise.all([first, second]);
    expect(starts).toHaveLength(2);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(145);
  });

  it('spaces a step asked for just after the previous one ended (idle in between)', async () => {
    const starts: number[] = [];
    const queue = new RolloutDriveQueue(
      async () => {
        starts.push(performance.now());
      },
      silentLogger(),
      150,
    );
    await queue.request('r1');
    await queue.request('r1');
    await queue.request('r1');
    expect(starts).toHaveLength(3);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(145);
    expect(starts[2]! - starts[1]!).toBeGreaterThanOrEqual(145);
  });
});
