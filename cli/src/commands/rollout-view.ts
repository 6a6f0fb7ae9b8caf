// How a rollout reads in a terminal: its status in words, progress bars, the waves and devices
// tables (rollouts show, create, watch, ls and devices).
import type { Rollout, RolloutDevice, RolloutSummary } from '../api-types.js';
import { ago, bar, keyValues, table, when } from '../output.js';

export const STATES = ['PENDING', 'DOWNLOADING', 'VERIFYING', 'APPLYING', 'HEALTHY', 'ROLLED_BACK', 'FAILED'] as const;
const TERMINAL = new Set(['HEALTHY', 'ROLLED_BACK', 'FAILED']);

export const terminalCount = (counts: Record<string, number>) => [...TERMINAL].reduce((n, s) => n + (counts[s] ?? 0), 0);
export const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

function countsText(counts: Record<string, number>): string {
  const parts = STATES.filter((s) => (counts[s] ?? 0) > 0).map((s) => `${s.toLowerCase()} ${counts[s]}`);
  return parts.length ? parts.join(', ') : 'no devices';
}

function statusText(r: RolloutSummary): string {
  switch (r.status) {
    case 'waiting_approval':
      // currentWave is the last wave started; the one waiting is the next.
      return `wave ${r.currentWave + 2} of ${r.waves.length} waits for approval`;
    case 'running':
      return `running wave ${r.currentWave + 1} of ${r.waves.length}`;
    case 'halted':
      return `HALTED in wave ${(r.halt?.wave ?? r.currentWave) + 1} of ${r.waves.length}`;
    case 'aborted':
      return `aborted${r.abortPolicy ? ` (policy ${r.abortPolicy})` : ''}`;
    case 'completed':
    default: // and a status a newer server may send
      return r.status;
  }
}

/** A rollout as shown: the detail, or the summary when the device list could not be had. */
export type ShownRollout = RolloutSummary & Partial<Pick<Rollout, 'devices'>>;

export function renderRollout(r: ShownRollout): string {
  const lines: string[] = [];
  const probe = r.probe as { type?: string; timeoutSeconds?: number; attempts?: number };
  lines.push(
    keyValues([
      ['rollout', r.id],
      ['artifact', `${r.artifact.name}@${r.artifact.version} (${r.artifact.kind})`],
      ['fleet / group', `${r.fleet} / ${r.group}`],
      ['status', statusText(r)],
      ...(r.halt ? ([['halt reason', `${r.halt.reason} (${r.halt.failures} failure(s), tolerance ${r.halt.tolerance}, ${when(r.halt.at)})`]] as Array<[string, string]>) : []),
      ['progress', `${bar(terminalCount(r.counts), total(r.counts))} ${terminalCount(r.counts)}/${total(r.counts)} finished: ${countsText(r.counts)}`],
      ['probe', `${probe.type ?? '?'}, ${probe.attempts ?? '?'} attempt(s) of ${probe.timeoutSeconds ?? '?'} s`],
      ['max failure rate', r.strategy?.max_failure_rate ?? 0],
      ['created', `${when(r.createdAt)}${r.createdBy ? ` by ${r.createdBy}` : ''}`],
      ['updated', `${when(r.updatedAt)} (${ago(r.updatedAt)})`],
    ]),
  );
  lines.push('', 'Waves:');
  lines.push(
    table(
      ['WAVE', 'PERCENT', 'APPROVAL', 'STATUS', 'DEVICES', 'PROGRESS', 'STATES'],
      r.waves.map((w) => [
        w.index + 1,
        `${w.percent}%`,
        w.approval,
        w.status,
        w.devices,
        `${bar(terminalCount(w.counts), w.devices, 10)} ${terminalCount(w.counts)}/${w.devices}`,
        countsText(w.counts),
      ]),
    ),
  );
  if (r.devices) lines.push('', 'Devices:', r.devices.length ? devicesTable(r.devices) : '  (none)');
  return lines.join('\n');
}

/** A rollout's devices as a table: the detail's list, or pages of `rollouts devices`. */
export function devicesTable(devices: RolloutDevice[]): string {
  return table(
    ['DEVICE', 'WAVE', 'STATE', 'UPDATED', 'REASON'],
    devices.map((d) => [d.name, d.wave + 1, d.state, d.updatedAt ? ago(d.updatedAt) : '-', d.reason]),
  );
}

/** One line per change while watching: time, status, progress. */
export function summaryLine(r: RolloutSummary): string {
  const t = new Date().toISOString().slice(11, 19);
  return `${t} ${statusText(r)}  ${bar(terminalCount(r.counts), total(r.counts), 20)} ${terminalCount(r.counts)}/${total(r.counts)}  ${countsText(r.counts)}`;
}
