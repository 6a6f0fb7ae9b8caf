// Fleet overview: devices online and offline, device states in active rollouts, active rollouts.
import { api, can, type Page } from '../api.js';
import { h, link, replace } from '../dom.js';
import { progressBar, stateBar, statusBadge, sum, TERMINAL, time } from '../format.js';
import { ACTIVE_STATUSES, type DeviceSummary, type Rollout } from '../types.js';
import { empty, errorBox, keepFocus, pageHeader, table, type ViewContext } from '../ui.js';

const REFRESH_MS = 5000;

function stat(label: string, value: number | string, tone: string, href?: string): HTMLElement {
  const inner = [h('span', { class: 'stat-value' }, String(value)), h('span', { class: 'stat-label' }, label)];
  return h('li', { class: `stat tone-${tone}` }, href ? h('a', { href }, ...inner) : inner);
}

export async function activeRollouts(fleet?: string): Promise<Rollout[]> {
  const pages = await Promise.all(ACTIVE_STATUSES.map((status) => api.get<Page<Rollout>>('/rollouts', { status, fleet, limit: 200 })));
  return pages.flatMap((p) => p.items).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

export function rolloutRows(rollouts: Rollout[]): Array<Array<Node | string>> {
  return rollouts.map((r) => [
    link(`/rollouts/${encodeURIComponent(r.id)}`, `${r.artifact.name}@${r.artifact.version}`),
    `${r.fleet} / ${r.group}`,
    statusBadge(r.status),
    r.status === 'waiting_approval'
      ? `${Math.min(r.currentWave + 2, r.waves.length)} of ${r.waves.length} (needs approval)`
      : `${Math.min(r.currentWave + 1, r.waves.length)} of ${r.waves.length}`,
    progressBar(sum(r.counts, TERMINAL), sum(r.counts), `Rollout ${r.artifact.name}@${r.artifact.version} progress`),
    time(r.createdAt),
  ]);
}

export async function overviewView(ctx: ViewContext): Promise<void> {
  ctx.title('Overview');
  const fleetLabel = ctx.me.fleet === '*' ? 'all fleets' : `fleet ${ctx.me.fleet}`;
  const body = h('div', { 'aria-live': 'off' });
  const updated = h('p', { class: 'muted small', role: 'status' });
  replace(ctx.root, pageHeader(`Fleet overview`, h('span', { class: 'muted' }, fleetLabel)), updated, body);

  async function load(): Promise<void> {
    const sections: HTMLElement[] = [];
    if (can(ctx.me, 'devices.read')) {
      try {
        const [all, online] = await Promise.all([api.get<Page<DeviceSummary>>('/devices', { limit: 1 }), api.get<Page<DeviceSummary>>('/devices', { limit: 1, online: true })]);
        sections.push(
          h(
            'section',
            { 'aria-labelledby': 'devices-h' },
            h('h2', { id: 'devices-h' }, 'Devices'),
            h(
              'ul',
              { class: 'stats' },
              stat('devices', all.total, 'neutral', '#/devices'),
              stat('online', online.total, 'good', '#/devices?online=true'),
              stat('offline', all.total - online.total, all.total - online.total > 0 ? 'warn' : 'neutral', '#/devices?online=false'),
            ),
          ),
        );
      } catch (err) {
        sections.push(errorBox(err));
      }
    }
    if (can(ctx.me, 'rollouts.read')) {
      try {
        const active = await activeRollouts();
        const counts: Record<string, number> = {};
        for (const r of active) for (const [s, n] of Object.entries(r.counts ?? {})) counts[s] = (counts[s] ?? 0) + n;
        sections.push(
          h(
            'section',
            { 'aria-labelledby': 'states-h' },
            h('h2', { id: 'states-h' }, 'Device states in active rollouts'),
            active.length ? stateBar(counts, 'Device states in active rollouts') : empty('No rollout is active.'),
          ),
          h(
            'section',
            { 'aria-labelledby': 'active-h' },
            h('h2', { id: 'active-h' }, `Active rollouts (${active.length})`),
            active.length
              ? table('Active rollouts', ['Artifact', 'Fleet / group', 'Status', 'Wave', 'Progress', 'Created'], rolloutRows(active))
              : empty('Nothing is rolling out right now.'),
          ),
        );
      } catch (err) {
        sections.push(errorBox(err));
      }
    }
    if (sections.length === 0) sections.push(empty('This key may read neither devices nor rollouts.'));
    if (ctx.left()) return;
    keepFocus(body, () => replace(body, ...sections));
    replace(updated, `Updated ${new Date().toLocaleTimeString()} · refreshes every ${REFRESH_MS / 1000} s`);
  }

  await load();
  const timer = setInterval(() => void load().catch(() => {}), REFRESH_MS);
  ctx.onLeave(() => clearInterval(timer));
}
