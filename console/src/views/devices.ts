// Devices: the list with filters, and one device (profile, installed, history, logs, decommission).
import { api, can, download, type Page, seg } from '../api.js';
import { h, link, replace } from '../dom.js';
import { absolute, bytes, stateBadge, statusBadge, time } from '../format.js';
import type { DeviceDetail, DeviceSummary, LogRequest } from '../types.js';
import { empty, errorBox, field, keepFocus, loading, pageHeader, pager, setQuery, table, type ViewContext } from '../ui.js';

const PAGE = 50;

export function deviceStatus(d: Pick<DeviceSummary, 'online' | 'decommissionedAt'>): string {
  return d.decommissionedAt ? 'decommissioned' : d.online ? 'online' : 'offline';
}

function tagList(tags: Record<string, string>): HTMLElement | string {
  const entries = Object.entries(tags);
  if (!entries.length) return '–';
  return h(
    'ul',
    { class: 'tags' },
    entries.map(([k, v]) => h('li', null, h('code', null, `${k}=${v}`))),
  );
}

export async function devicesView(ctx: ViewContext): Promise<void> {
  ctx.title('Devices');
  const q = ctx.query;
  const fleet = q.get('fleet') ?? '';
  const online = q.get('online') ?? '';
  const tag = q.get('tag') ?? '';
  const offset = Number(q.get('offset') ?? 0) || 0;

  const fleetInput = h('input', { name: 'fleet', value: fleet, placeholder: ctx.me.fleet === '*' ? 'all fleets' : ctx.me.fleet });
  const onlineSelect = h(
    'select',
    { name: 'online' },
    h('option', { value: '' }, 'Any'),
    h('option', { value: 'true', selected: online === 'true' }, 'Online'),
    h('option', { value: 'false', selected: online === 'false' }, 'Offline'),
  );
  const tagInput = h('input', { name: 'tag', value: tag, placeholder: 'key=value' });
  const filters = h(
    'form',
    {
      class: 'filters',
      role: 'search',
      'aria-label': 'Filter devices',
      onsubmit: (e: Event) => {
        e.preventDefault();
        setQuery('/devices', { fleet: fleetInput.value.trim(), online: onlineSelect.value, tag: tagInput.value.trim() });
      },
    },
    field('Fleet', fleetInput),
    field('Connection', onlineSelect),
    field('Tag', tagInput),
    h('button', { type: 'submit', class: 'button secondary' }, 'Filter'),
  );
  const results = h('div', null, loading());
  replace(ctx.root, pageHeader('Devices'), filters, results);

  async function load(): Promise<void> {
    const page = await api.get<Page<DeviceSummary>>('/devices', {
      fleet: fleet || undefined,
      online: online || undefined,
      tag: tag || undefined,
      limit: PAGE,
      offset,
    });
    if (ctx.left()) return;
    keepFocus(results, () =>
      replace(
        results,
        page.items.length
          ? table(
              'Devices',
              ['Device', 'Fleet', 'Status', 'Last seen', 'Agent', 'Tags'],
              page.items.map((d) => [
                link(`/devices/${encodeURIComponent(d.fleet)}/${encodeURIComponent(d.name)}`, d.name),
                d.fleet,
                statusBadge(deviceStatus(d)),
                time(d.lastSeenAt),
                d.agentVersion ?? '–',
                tagList(d.tags),
              ]),
            )
          : empty('No devices match.'),
        pager(page, (o) => setQuery('/devices', { fleet, online, tag, offset: o })),
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

export async function deviceView(ctx: ViewContext): Promise<void> {
  const [fleet, name] = ctx.params as [string, string];
  ctx.title(`${name} · Devices`);
  const path = `/devices${seg(fleet, name)}`;
  const head = h('div');
  const profile = h('section', { 'aria-labelledby': 'profile-h' });
  const installed = h('section', { 'aria-labelledby': 'installed-h' });
  const history = h('section', { 'aria-labelledby': 'history-h' });
  const logs = h('section', { 'aria-labelledby': 'logs-h' });
  const danger = h('section', { 'aria-labelledby': 'danger-h' });
  replace(ctx.root, h('p', { class: 'breadcrumb' }, link('/devices', 'Devices'), ' / ', fleet), head, loading());

  let device: DeviceDetail;
  try {
    device = await api.get<DeviceDetail>(path);
  } catch (err) {
    replace(ctx.root, h('p', { class: 'breadcrumb' }, link('/devices', 'Devices')), pageHeader(name), errorBox(err));
    return;
  }
  replace(ctx.root, h('p', { class: 'breadcrumb' }, link('/devices', 'Devices'), ' / ', fleet), head, profile, installed, history, logs, danger);

  function renderDevice(d: DeviceDetail): void {
    replace(head, pageHeader(h('span', null, d.name, ' ', statusBadge(deviceStatus(d)))));
    const hw = d.hardware ?? {};
    replace(
      profile,
      h('h2', { id: 'profile-h' }, 'Profile'),
      h(
        'dl',
        { class: 'props' },
        ...[
          ['Fleet', d.fleet],
          ['Identity', h('code', null, d.spiffeId)],
          ['Agent version', d.agentVersion ?? '–'],
          ['Last seen', d.lastSeenAt ? h('span', null, time(d.lastSeenAt), ` (${absolute(d.lastSeenAt)})`) : 'never'],
          ['Heartbeat', `every ${d.heartbeatIntervalSeconds} s`],
          ['Registered', absolute(d.registeredAt)],
          ['Tags', tagList(d.tags)],
          [
            'Hardware',
            Object.keys(hw).length
              ? h(
                  'ul',
                  { class: 'plain' },
                  Object.entries(hw).map(([k, v]) => h('li', null, `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)),
                )
              : '–',
          ],
          [
            'Capabilities',
            d.capabilities.length
              ? h(
                  'ul',
                  { class: 'tags' },
                  d.capabilities.map((c) => h('li', null, h('code', null, [c.kind, c.name, c.version].filter(Boolean).join(' ')))),
                )
              : '–',
          ],
          ...(d.decommissionedAt ? [['Decommissioned', absolute(d.decommissionedAt)]] : []),
        ].flatMap(([k, v]) => [h('dt', null, k as string), h('dd', null, v as Node | string)]),
      ),
    );
    replace(
      installed,
      h('h2', { id: 'installed-h' }, 'Installed artifacts'),
      d.installed.length
        ? table(
            'Installed artifacts',
            ['Artifact', 'Kind', 'Version', 'State', 'Updated'],
            d.installed.map((i) => [i.name, i.kind, i.version, stateBadge(i.state), time(i.updatedAt)]),
          )
        : empty('Nothing installed yet.'),
    );
    replace(
      history,
      h('h2', { id: 'history-h' }, 'History'),
      d.history.length
        ? table(
            'Status reports, newest first',
            ['#', 'Received', 'Artifact', 'State', 'Reason', 'Rollout'],
            d.history.map((r) => [
              String(r.sequence),
              time(r.receivedAt),
              `${r.artifact.name}@${r.artifact.version}`,
              stateBadge(r.state),
              r.reason || '–',
              r.rolloutId ? link(`/rollouts/${encodeURIComponent(r.rolloutId)}`, 'rollout') : '–',
            ]),
          )
        : empty('No status reports yet.'),
    );
  }
  renderDevice(device);

  // --- logs
  const logsTable = h('div');
  const logsStatus = h('div', { 'aria-live': 'polite' });
  async function loadLogs(): Promise<void> {
    if (!can(ctx.me, 'logs.read')) return;
    const page = await api.get<Page<LogRequest>>('/log-requests', { fleet, device: name, limit: 20 });
    if (ctx.left()) return;
    keepFocus(logsTable, () =>
      replace(
        logsTable,
        page.items.length
          ? table(
              'Log requests',
              ['Requested', 'By', 'Status', 'Size', ''],
              page.items.map((r) => [
                time(r.requestedAt),
                r.requestedBy,
                statusBadge(r.status),
                bytes(r.sizeBytes),
                r.status === 'fulfilled'
                  ? h(
                      'button',
                      {
                        type: 'button',
                        class: 'button secondary small',
                        onclick: async () => {
                          try {
                            await download(`/log-requests${seg(r.id)}/bundle`, `${fleet}-${name}-${r.id}.gz`);
                          } catch (err) {
                            replace(logsStatus, errorBox(err));
                          }
                        },
                      },
                      'Download',
                    )
                  : h('span', { class: 'muted' }, 'waiting for the device'),
              ]),
            )
          : empty('No log requests for this device.'),
      ),
    );
  }
  const canRequest = can(ctx.me, 'logs.write') && !device.decommissionedAt;
  const maxBytes = h('input', { type: 'number', min: '1', step: '1', name: 'maxBytes', placeholder: 'server default' });
  replace(
    logs,
    h('h2', { id: 'logs-h' }, 'Logs'),
    canRequest
      ? h(
          'form',
          {
            class: 'inline-form',
            onsubmit: async (e: Event) => {
              e.preventDefault();
              try {
                const body = maxBytes.value ? { maxBytes: Number(maxBytes.value) } : {};
                const r = await api.post<{ id: string }>(`${path}/log-requests`, body);
                replace(logsStatus, h('p', { class: 'notice' }, `Requested logs (request ${r.id}); the device uploads them after its next heartbeat.`));
                await loadLogs();
              } catch (err) {
                replace(logsStatus, errorBox(err));
              }
            },
          },
          field('Byte budget (optional)', maxBytes),
          h('button', { type: 'submit', class: 'button secondary' }, 'Request logs'),
        )
      : null,
    logsStatus,
    can(ctx.me, 'logs.read') ? logsTable : empty('This key may not read logs.'),
  );
  await loadLogs().catch((err) => replace(logsTable, errorBox(err)));

  // --- decommission
  function renderDanger(d: DeviceDetail): void {
    if (!can(ctx.me, 'devices.manage') || d.decommissionedAt) {
      replace(danger);
      return;
    }
    const confirmBox = h('div', { class: 'confirm', hidden: true });
    const open = h(
      'button',
      {
        type: 'button',
        class: 'button danger',
        'aria-expanded': 'false',
        onclick: () => {
          confirmBox.hidden = false;
          open.setAttribute('aria-expanded', 'true');
          yes.focus();
        },
      },
      'Decommission…',
    );
    const yes = h(
      'button',
      {
        type: 'button',
        class: 'button danger',
        onclick: async () => {
          yes.disabled = true;
          try {
            await api.post(`${path}/decommission`);
            const fresh = await api.get<DeviceDetail>(path);
            renderDevice(fresh);
            renderDanger(fresh);
            replace(logs);
          } catch (err) {
            confirmBox.append(errorBox(err));
            yes.disabled = false;
          }
        },
      },
      `Yes, decommission ${d.name}`,
    );
    const no = h(
      'button',
      {
        type: 'button',
        class: 'button secondary',
        onclick: () => {
          confirmBox.hidden = true;
          open.setAttribute('aria-expanded', 'false');
          open.focus();
        },
      },
      'Cancel',
    );
    replace(
      confirmBox,
      h(
        'p',
        null,
        `${d.name} will be told at its next heartbeat that it is offboarded: it deletes its keys and certificate and stops. Its record and history stay. This cannot be undone.`,
      ),
      h('div', { class: 'button-row' }, yes, no),
    );
    replace(danger, h('h2', { id: 'danger-h' }, 'Decommission'), open, confirmBox);
  }
  renderDanger(device);

  const timer = setInterval(async () => {
    try {
      const fresh = await api.get<DeviceDetail>(path);
      if (ctx.left()) return;
      keepFocus(ctx.root, () => renderDevice(fresh));
      await loadLogs();
    } catch {
      // keep what is shown; the next tick tries again
    }
  }, 5000);
  ctx.onLeave(() => clearInterval(timer));
}
