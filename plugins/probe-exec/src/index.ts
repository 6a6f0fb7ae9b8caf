// @meshanics/probe-exec: runs an allowlisted health-check binary; exit 0 is healthy.
// No shell, a fixed argv, a minimal environment, and at the timeout the binary's whole
// process group is killed (core's runAllowlistedBinary).
import { assertExecBinary, describeRun, runAllowlistedBinary, type Agent, type MeshanicsPlugin } from '@meshanics/core';
import { EXEC_PROBE_SPEC_SCHEMA, PROBE_TYPE, type ExecProbeSpec } from './schema.js';

export { EXEC_PROBE_SPEC_SCHEMA, PROBE_TYPE, type ExecProbeSpec } from './schema.js';

const PLUGIN_NAME = 'ExecProbePlugin';

export default class ExecProbePlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  readonly name = PLUGIN_NAME;
  readonly version = '0.1.0';
  readonly provides = { probeType: PROBE_TYPE };
  readonly specSchema = EXEC_PROBE_SPEC_SCHEMA;
  readonly coreApi = '^0.1.0';

  apply(agent: Agent): void {
    // At validation, before anything is downloaded or swapped: a probe the device would refuse
    // to run must not let an assignment go live first (runAllowlistedBinary checks again).
    agent.hooks.validateProbe.for(PROBE_TYPE).tap(PLUGIN_NAME, (ctx) => {
      assertExecBinary(agent.allowlist, (ctx.spec as ExecProbeSpec).argv[0]!);
    });
    agent.hooks.probe.for(PROBE_TYPE).tapPromise(PLUGIN_NAME, async (ctx) => {
      const { argv } = ctx.spec as ExecProbeSpec;
      const result = await runAllowlistedBinary(agent.allowlist, argv, { timeoutMs: ctx.timeoutMs, signal: ctx.signal });
      return { healthy: result.exitCode === 0 && !result.timedOut, detail: describeRun(result) };
    });
  }
}
