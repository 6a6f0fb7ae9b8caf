// The rollout list.
import { api, can, type Page } from '../api.js';
import { h, replace } from '../dom.js';
import type { Rollout } from '../types.js';
import { empty, errorBox, field, keepFocus, loading, pageHeader, pager, setQuery, table, type ViewContext } from '../ui.js';
import { rolloutRows } from './overview.js';

const STATUSES = [
  ['', 'Any'],
  ['running', 'Running'],
  ['waiting_approval', 'Waiting for approval'],
  ['halted', 'Halted'],
  ['completed', 'Completed'],
  ['aborted', 'Aborted'],
] as const;

export async function rolloutsView(ctx: ViewContext): Promise<void> {
  ctx.title('Rollouts');
  const fleet = ctx.query.get('fleet') ?? '';
  const status = ctx.query.get('status') ?? '';
  const offset = Number(ctx.query.get('offset') ?? 0) || 0;
  const fleetInput = h('input', { name: 'fleet', value: fleet, placeholder: ctx.me.fleet === '*' ? 'all fleets' : ctx.me.fleet });
  const statusSelect = h(
    'select',
    { name: 'status' },
    STATUSES.map(([v, l]) => h('option', { value: v, selected: v === status }, l)),
  );
  const results = h('div', null, loading());
  replace(
    ctx.root,
    pageHeader('Rollouts', can(ctx.me, 'rollouts.write') ? h('a', { class: 'button', href: '#/rollouts/new' }, 'New rollout') : null),
    h(
      'form',
      {
        class: 'filters',
        role: 'search',
        'aria-label': 'Filter rollouts',
        onsubmit: (e: Event) => {
          e.preventDefault();
          setQuery('/rollouts', { fleet: fleetInput.value.trim(), status: statusSelect.value });
        },
      },
      field('Fleet', fleetInput),
      field('Status', statusSelect),
      h('button', { type: 'submit', class: 'button secondary' }, 'Filter'),
    ),
    results,
  );
  async function load(): Promise<void> {
    const page = await api.get<Page<Rollout>>('/rollouts', { fleet: fleet || undefined, status: status || undefined, limit: 50, offset });
    if (ctx.left()) return;
    keepFocus(results, () =>
      replace(
        results,
        page.items.length ? table('Rollouts', ['Artifact', 'Fleet / group', 'Status', 'Wave', 'Progress', 'Created'], rolloutRows(page.items)) : empty('No rollouts.'),
        pager(page, (o) => setQuery('/rollouts', { fleet, status, offset: o })),
      ),
    );
  }
  try {
    await load();
  } catch (err) {
    replace(results, errorBox(err));
    return;
  }
  const timer = setInterval(() => void load().catch(() => {}), 5000);
  ctx.onLeave(() => clearInterval(timer));
}
