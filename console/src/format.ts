// Presentation helpers: times, sizes, state and status badges (always text, never color alone).
import { type Child, h } from './dom.js';

export const STATES = ['PENDING', 'DOWNLOADING', 'VERIFYING', 'APPLYING', 'HEALTHY', 'ROLLED_BACK', 'FAILED'] as const;
export const TERMINAL = new Set(['HEALTHY', 'ROLLED_BACK', 'FAILED']);

const STATE_META: Record<string, { label: string; icon: string; tone: string }> = {
  PENDING: { label: 'Pending', icon: '○', tone: 'neutral' },
  DOWNLOADING: { label: 'Downloading', icon: '↓', tone: 'progress' },
  VERIFYING: { label: 'Verifying', icon: '◔', tone: 'progress' },
  APPLYING: { label: 'Applying', icon: '◑', tone: 'progress' },
  HEALTHY: { label: 'Healthy', icon: '✓', tone: 'good' },
  ROLLED_BACK: { label: 'Rolled back', icon: '↺', tone: 'warn' },
  FAILED: { label: 'Failed', icon: '✕', tone: 'bad' },
};

const STATUS_META: Record<string, { label: string; icon: string; tone: string }> = {
  running: { label: 'Running', icon: '▶', tone: 'progress' },
  waiting_approval: { label: 'Waiting for approval', icon: '⏸', tone: 'attention' },
  halted: { label: 'Halted', icon: '■', tone: 'bad' },
  completed: { label: 'Completed', icon: '✓', tone: 'good' },
  aborted: { label: 'Aborted', icon: '✕', tone: 'neutral' },
  online: { label: 'Online', icon: '●', tone: 'good' },
  offline: { label: 'Offline', icon: '○', tone: 'neutral' },
  decommissioned: { label: 'Decommissioned', icon: '⊘', tone: 'neutral' },
  pending: { label: 'Pending', icon: '○', tone: 'neutral' },
  active: { label: 'Active', icon: '▶', tone: 'progress' },
  complete: { label: 'Complete', icon: '✓', tone: 'good' },
  fulfilled: { label: 'Fulfilled', icon: '✓', tone: 'good' },
};

export function stateLabel(state: string): string {
  return STATE_META[state]?.label ?? state;
}

export function stateTone(state: string): string {
  return STATE_META[state]?.tone ?? 'neutral';
}

/** A badge for a device's artifact state: icon + words, with the raw state for tests and tools. */
export function stateBadge(state: string): HTMLElement {
  const m = STATE_META[state] ?? { label: state, icon: '•', tone: 'neutral' };
  return h('span', { class: `badge tone-${m.tone}`, dataset: { state } }, h('span', { 'aria-hidden': 'true' }, m.icon), ` ${m.label}`);
}

export function statusBadge(status: string): HTMLElement {
  const m = STATUS_META[status] ?? { label: status, icon: '•', tone: 'neutral' };
  return h('span', { class: `badge tone-${m.tone}`, dataset: { status } }, h('span', { 'aria-hidden': 'true' }, m.icon), ` ${m.label}`);
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}

export function ago(iso: string | null | undefined): string {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.round((Date.now() - t) / 1000);
  const abs = Math.abs(s);
  const v = abs < 60 ? `${abs} s` : abs < 3600 ? `${Math.floor(abs / 60)} min` : abs < 86400 ? `${Math.floor(abs / 3600)} h` : `${Math.floor(abs / 86400)} d`;
  return s >= 0 ? `${v} ago` : `in ${v}`;
}

export function absolute(iso: string | null | undefined): string {
  if (!iso) return '–';
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? iso : `${t.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** A `<time>` showing the relative time, the absolute one on hover. */
export function time(iso: string | null | undefined, mode: 'ago' | 'absolute' = 'ago'): HTMLElement {
  if (!iso) return h('span', { class: 'muted' }, 'never');
  return h('time', { datetime: iso, title: absolute(iso) }, mode === 'ago' ? ago(iso) : absolute(iso));
}

/** An accessible progress bar: role progressbar with its numbers, and the numbers as text. */
export function progressBar(done: number, total: number, label: string, extra?: Child): HTMLElement {
  const pct = total > 0 ? Math.round((done / total) * 100) : 0;
  return h(
    'div',
    { class: 'progress-row' },
    h(
      'div',
      {
        class: 'progress',
        role: 'progressbar',
        'aria-label': label,
        'aria-valuemin': '0',
        'aria-valuemax': String(total),
        'aria-valuenow': String(done),
        'aria-valuetext': `${done} of ${total} finished`,
      },
      h('div', { class: 'progress-fill', style: `width: ${pct}%` }),
    ),
    h('span', { class: 'progress-text' }, `${done} / ${total}`, extra ?? null),
  );
}

/** A bar split by state (each segment titled), plus the counts as text. */
export function stateBar(counts: Record<string, number>, label: string): HTMLElement {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const present = STATES.filter((s) => (counts[s] ?? 0) > 0);
  return h(
    'div',
    { class: 'statebar-wrap' },
    h(
      'div',
      { class: 'statebar', role: 'img', 'aria-label': `${label}: ${present.map((s) => `${counts[s]} ${stateLabel(s).toLowerCase()}`).join(', ') || 'no devices'}` },
      present.map((s) => h('span', { class: `seg tone-${stateTone(s)}`, style: `flex-grow: ${counts[s]}`, title: `${stateLabel(s)}: ${counts[s]}` })),
      total === 0 ? h('span', { class: 'seg empty', style: 'flex-grow: 1' }) : null,
    ),
    h(
      'ul',
      { class: 'legend' },
      present.map((s) => h('li', null, stateBadge(s), h('span', { class: 'count' }, String(counts[s])))),
    ),
  );
}

export function sum(counts: Record<string, number> | undefined, states: Iterable<string> = STATES): number {
  if (!counts) return 0;
  let n = 0;
  for (const s of states) n += counts[s] ?? 0;
  return n;
}
