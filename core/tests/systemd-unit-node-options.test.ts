// The agent's systemd unit passes V8 flags in NODE_OPTIONS (issue #9, idle RSS). Node refuses
// to start when NODE_OPTIONS holds a flag it does not allow there, so the unit's exact line is
// run here through a real node: it must start, expose gc (transport/young-gc.ts uses it) and
// keep the young generation at the unit's cap.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const UNIT = new URL('../systemd/meshanics-agent.service', import.meta.url);

function unitNodeOptions(): string {
  const line = readFileSync(UNIT, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Environment=') && l.includes('NODE_OPTIONS='));
  const match = line && /^Environment="NODE_OPTIONS=([^"]*)"$/.exec(line);
  if (!match) throw new Error('the unit sets no NODE_OPTIONS');
  return match[1]!;
}

describe('the agent systemd unit', () => {
  it('starts node with a capped young generation and gc exposed, through NODE_OPTIONS', () => {
    const nodeOptions = unitNodeOptions();
    expect(nodeOptions.split(' ')).toEqual(expect.arrayContaining(['--max-semi-space-size=1', '--expose-gc']));
    const probe = `
      const v8 = require('node:v8');
      const young = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
      // Start-up-like churn with survivors: without the cap this grows the young generation.
      const keep = [];
      for (let i = 0; i < 400000; i++) { const o = { i, s: 'x' + i }; if (i % 3 === 0) keep.push(o); }
      console.log(JSON.stringify({ gc: typeof globalThis.gc, young: young(), kept: keep.length }));`;
    const run = (env: NodeJS.ProcessEnv) => JSON.parse(execFileSync(process.execPath, ['-e', probe], { env, encoding: 'utf8' })) as { gc: string; young: number };
    const { NODE_OPTIONS: _ignored, ...base } = process.env;
    const withUnit = run({ ...base, NODE_OPTIONS: nodeOptions });
    const without = run(base);
    expect(withUnit.gc).toBe('function');
    expect(withUnit.young).toBeLessThanOrEqual(2 * 1024 * 1024);
    expect(without.young).toBeGreaterThan(withUnit.young);
  });
});
