// @meshanics/core/testing: helpers for plugin tests. Not for devices.
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Agent } from '../agent.js';
import type { Assignment } from '../assignment.js';
import { defaultAllowlist, type Allowlist } from '../config/agent-config.js';
import type { MeshanicsPlugin, VerifiedTarget } from '../plugin.js';
import { AgentStateStore } from '../state/agent-state.js';
import { LocalTargetSource } from './local-target-source.js';

export { LocalTargetSource } from './local-target-source.js';

export interface TestAgent {
  agent: Agent;
  source: LocalTargetSource;
  dataDir: string;
}

/** An agent on a fresh temp data dir with a local target source and the given plugins. */
export async function createTestAgent(plugins: MeshanicsPlugin[], options: { allowlist?: Partial<Allowlist>; dataDir?: string; targetsDir?: string } = {}): Promise<TestAgent> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'meshanics-agent-')));
  const source = new LocalTargetSource(options.targetsDir ?? path.join(dataDir, '..', `${path.basename(dataDir)}-targets`));
  const agent = new Agent({
    dataDir,
    targetSource: source,
    state: await AgentStateStore.open(dataDir),
    allowlist: defaultAllowlist(options.allowlist),
  });
  for (const plugin of plugins) agent.use(plugin);
  return { agent, source, dataDir };
}

let counter = 0;

/** An assignment for a published target; override any field. */
export function testAssignment(target: VerifiedTarget, fields: Partial<Assignment> & Pick<Assignment, 'kind'>): Assignment {
  counter += 1;
  return {
    assignmentId: `test-${process.pid}-${counter}`,
    rolloutId: '',
    name: 'artifact',
    version: `v${counter}`,
    targetPath: target.targetPath,
    expectedSha256: target.sha256,
    expectedLength: target.length,
    specJson: '{}',
    probe: { type: 'file', specJson: '{"path":"/nonexistent"}', timeoutSeconds: 1, attempts: 1, initialDelaySeconds: 0 },
    ...fields,
  };
}
