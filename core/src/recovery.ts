// What an agent does at start about work a crash interrupted.
//
// Before the swap (downloading, verifying) nothing on the device changed: the journal entry
// stays and the pipeline resumes when the assignment arrives again (a partial download is
// continued). From apply on, the agent cannot know whether the new version was ever
// healthy, so it takes the conservative path: roll back to the known-good version (the
// rollback hooks are idempotent) and report ROLLED_BACK. The device is then on the old
// version or the new one, never a mix.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Agent } from './agent.js';
import { reasonOf } from './errors.js';
import { cleanUp, createContext, rollBack, stagingDirOf } from './pipeline.js';

export async function recoverInterrupted(agent: Agent): Promise<void> {
  const leftovers = agent.state.removedTempFiles ?? [];
  if (leftovers.length > 0) {
    agent.log.warn({ files: leftovers }, 'removed temp files of state writes a crash interrupted');
  }
  const { inflight } = agent.state.current;
  for (const [name, record] of Object.entries(inflight)) {
    const { assignment } = record;
    if (record.phase === 'downloading' || record.phase === 'verifying') continue;
    const log = agent.log.child({ assignmentId: assignment.assignmentId, artifact: name });
    log.warn({ phase: record.phase }, 'agent restarted in the middle of an update; rolling back');
    await agent.state.update((draft) => {
      const entry = draft.inflight[name];
      if (entry) entry.phase = 'rolling_back';
    });
    let spec: unknown;
    try {
      spec = agent.validate(assignment).spec;
    } catch {
      spec = undefined;
    }
    const ctx = createContext(agent, assignment, spec, agent.state.current.installed[name], record.pluginState, new AbortController().signal);
    const failure = agent.hasArtifactKind(assignment.kind)
      ? await rollBack(agent, ctx, `agent restarted during ${record.phase}`)
      : `no plugin for artifact kind "${assignment.kind}"`;
    await agent.transition(
      assignment,
      failure ? 'FAILED' : 'ROLLED_BACK',
      failure ? `agent restarted during ${record.phase}; rollback failed: ${failure}` : `agent restarted during ${record.phase}; previous version restored`,
    );
    await cleanUp(agent, ctx).catch((err: unknown) => log.warn({ err: reasonOf(err) }, 'cleanup failed'));
  }
  await removeStaleStaging(agent);
}

/** Staging directories that no in-flight download owns are leftovers: remove them. */
async function removeStaleStaging(agent: Agent): Promise<void> {
  const root = path.join(agent.dataDir, 'staging');
  const keep = new Set(Object.values(agent.state.current.inflight).map((r) => path.basename(stagingDirOf(agent, r.assignment.assignmentId))));
  let entries: string[];
  try {
    entries = await fs.readdir(root);
  } catch {
    return;
  }
  await Promise.all(entries.filter((e) => !keep.has(e)).map((e) => fs.rm(path.join(root, e), { recursive: true, force: true })));
}
