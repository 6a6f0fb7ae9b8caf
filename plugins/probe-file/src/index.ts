// @meshanics/probe-file: healthy when the readiness file exists, is a regular file and is
// non-empty. Timeout, attempts and initial delay are core's probe contract.
import { promises as fs } from 'node:fs';
import type { Agent, MeshanicsPlugin, ProbeAttemptContext, ProbeResult } from '@meshanics/core';
import { FILE_PROBE_SPEC_SCHEMA, PROBE_TYPE, type FileProbeSpec } from './schema.js';

export { FILE_PROBE_SPEC_SCHEMA, PROBE_TYPE, type FileProbeSpec } from './schema.js';

const PLUGIN_NAME = 'FileProbePlugin';

export async function checkReadinessFile(file: string): Promise<ProbeResult> {
  let stat;
  try {
    // lstat: a symlink is not the readiness file, whatever it points to.
    stat = await fs.lstat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { healthy: false, detail: code === 'ENOENT' ? `${file} does not exist` : `${file}: ${code ?? (err as Error).message}` };
  }
  if (!stat.isFile()) return { healthy: false, detail: `${file} is not a regular file` };
  if (stat.size === 0) return { healthy: false, detail: `${file} is empty` };
  return { healthy: true, detail: `${file} is ready (${stat.size} bytes)` };
}

export default class FileProbePlugin implements MeshanicsPlugin {
  static readonly PLUGIN_NAME = PLUGIN_NAME;
  readonly name = PLUGIN_NAME;
  readonly version = '0.1.0';
  readonly provides = { probeType: PROBE_TYPE };
  readonly specSchema = FILE_PROBE_SPEC_SCHEMA;
  readonly coreApi = '^0.1.0';

  apply(agent: Agent): void {
    agent.hooks.probe.for(PROBE_TYPE).tapPromise(PLUGIN_NAME, (ctx: ProbeAttemptContext) => checkReadinessFile((ctx.spec as FileProbeSpec).path));
  }
}
