import { describe, expect, it } from 'vitest';
import { decide, progressOf, type DeviceProgress, type RolloutSnapshot } from '../src/rollouts/progress.js';
import { cumulativeCounts, parseStrategy } from '../src/rollouts/strategy.js';
import { planWaves } from '../src/rollouts/wave-plan.js';

const strategy = (s: unknown) => {
  const r = parseStrategy(s);
  if (!r.ok) throw new Error(r.errors.join('; '));
  return r.strategy;
};

describe('rollout strategy', () => {
  it('defaults to one automatic wave of 100% that halts on the first failure', () => {
    expect(strategy(undefined)).toEqual({ waves: [{ percent: 100, approval: 'auto' }], max_failure_rate: 0 });
  });

  it('refuses waves that are not cumulative, do not end at 100, or a tolerance of 1', () => {
    const cases: Array<[unknown, string]> = [
      [{ waves: [{ percent: 50 }, { percent: 50 }] }, "strategy/waves/1/percent must be greater than the previous wave's 50"],
      [{ waves: [{ percent: 10 }, { percent: 90 }] }, 'strategy/waves/1/percent must be 100'],
      [{ waves: [{ percent: 100 }], max_failure_rate: 1 }, 'strategy/max_failure_rate must be < 1'],
      [{ waves: [{ percent: 100, approval: 'sometimes' }] }, 'strategy/waves/0/approval must be one of "auto", "manual"'],
      [{ waves: [] }, 'strategy/waves must NOT have fewer than 1 items'],
    ];
    for (const [input, message] of cases) {
      const r = parseStrategy(input);
      expect(r.ok).toBe(false);
      expect(!r.ok && r.errors.join('; ')).toContain(message);
    }
  });

  it('splits devices into non-empty cumulative waves in a stable order', () => {
    const s = strategy({ waves: [{ percent: 10 }, { percent: 50 }, { percent: 100 }] });
    expect(cumulativeCounts(s, 20)).toEqual([2, 10, 20]);
    expect(cumulativeCounts(s, 3)).toEqual([1, 2, 3]);
    const ids = Array.from({ length: 20 }, (_, i) => `d${i}`);
    const plan = planWaves('r1', ids, s);
    expect(plan.filter((p) => p.wave === 0)).toHaveLength(2);
    expect(plan.filter((p) => p.wave === 1)).toHaveLength(8);
    expect(plan.filter((p) => p.wave === 2)).toHaveLength(10);
    expect(planWaves('r1', [...ids].reverse(), s)).toEqual(plan);
    expect(planWaves('r2', ids, s).map((p) => p.deviceId)).not.toEqual(plan.map((p) => p.deviceId));
  });
});

describe('rollout decisions', () => {
  type Case = Omit<RolloutSnapshot, 'progress'> & { devices: DeviceProgress[] };
  const base = (over: Partial<Case>): Case => ({
    status: 'running',
    currentWave: 0,
    strategy: strategy({ waves: [{ percent: 50 }, { percent: 100, approval: 'manual' }] }),
    acknowledgedFailures: 0,
    devices: [
      { wave: 0, outcome: 'healthy', live: true },
      { wave: 0, outcome: 'healthy', live: true },
      { wave: 1, outcome: 'pending', live: true },
      { wave: 1, outcome: 'pending', live: true },
    ],
    ...over,
  });
  const decideFor = ({ devices, ...rest }: Case) => decide({ ...rest, progress: progressOf(devices, rest.currentWave) });

  it('waits for a manual wave once the earlier waves are all terminal', () => {
    expect(decideFor(base({}))).toEqual({ action: 'await_approval', wave: 1 });
  });

  it('halts on the first failure with a tolerance of 0, even mid-wave', () => {
    const d = base({});
    d.devices[0]!.outcome = 'rolled_back';
    d.devices[1]!.outcome = 'in_progress';
    expect(decideFor(d)).toEqual({ action: 'halt', wave: 0, failures: 1, targeted: 4, tolerance: 0 });
  });

  it('does not halt again for failures a resume acknowledged', () => {
    const d = base({ acknowledgedFailures: 1 });
    d.devices[0]!.outcome = 'failed';
    expect(decideFor(d)).toEqual({ action: 'await_approval', wave: 1 });
    d.devices[1]!.outcome = 'failed';
    expect(decideFor(d).action).toBe('halt');
  });

  it('ignores devices that are gone when deciding a wave is complete, and completes after the last wave', () => {
    const d = base({ currentWave: 1 });
    d.devices[2]!.outcome = 'healthy';
    d.devices[3]!.live = false;
    expect(decideFor(d)).toEqual({ action: 'complete' });
    expect(decideFor({ ...d, status: 'halted' })).toEqual({ action: 'none' });
  });

  it('waits while a started device is still in progress, whatever the later waves do', () => {
    const d = base({});
    d.devices[1]!.outcome = 'in_progress';
    d.devices[2]!.outcome = 'healthy';
    expect(decideFor(d)).toEqual({ action: 'none' });
  });
});
