// Over 400 lines: one view's rendering, live updates and its three actions belong together; the
// DOM helpers and the API client are shared (dom.ts, api.ts).
// The rollout detail view: waves with progress bars, the devices' states live (server-sent
// events of the summary; polling every 2 s when the stream cannot be had), the halt reason, and
// the approve, resume and abort buttons for keys that hold the right. The device table is read
// a page at a time (GET /rollouts/:id/devices) and again on every change the stream reports:
// a rollout of 36,000 devices is 9 MB as one detail (docs/operator-api.md, "Large rollouts").
import { api, can, request, seg, url } from '../api.js';
import { h, link, replace, text } from '../dom.js';
import { absolute, ago, progressBar, stateBadge, stateBar, stateLabel, STATES, statusBadge, sum, TERMINAL, time } from '../format.js';
import type { RolloutDevice, RolloutDevicesPage, RolloutSummary } from '../types.js';
import { errorBox, field, loading, type ViewContext } from '../ui.js';

const POLL_MS = 2000;
/** Devices per page of the table. */
const PAGE_SIZE = 200;

/** While a rollout waits for approval, currentWave is the last wave started: the next one waits. */
function waitingWave(r: RolloutSummary): number {
  return Math.min(r.currentWave + 1, r.waves.length - 1);
}

interface Row {
  tr: HTMLTableRowElement;
  state: HTMLTableCellElement;
  reason: HTMLTableCellElement;
  updated: HTMLTableCellElement;
  last: string;
}

export async function rolloutDetailView(ctx: ViewContext): Promise<void> {
  const id = ctx.params[0]!;
  const path = `/rollouts${seg(id)}`;
  ctx.title('Rollout');
  replace(ctx.root, h('p', { class: 'breadcrumb' }, link('/rollouts', 'Rollouts')), loading());

  let rollout: RolloutSummary;
  try {
    rollout = await api.get<RolloutSummary>(`${path}/summary`);
  } catch (err) {
    replace(ctx.root, h('p', { class: 'breadcrumb' }, link('/rollouts', 'Rollouts')), h('h1', null, 'Rollout'), errorBox(err));
    return;
  }
  if (ctx.left()) return;

  // --- the skeleton, filled by update()
  const title = h('h1', { id: 'rollout-title' });
  const statusHolder = h('div', { class: 'status-holder', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' });
  const liveIndicator = h('p', { class: 'live-indicator', 'aria-live': 'off' });
  const haltPanel = h('div', { class: 'halt-holder' });
  const approvalPanel = h('div', { class: 'approval-holder' });
  const actions = h('section', { class: 'actions', 'aria-label': 'Actions' });
  const actionStatus = h('div', { 'aria-live': 'assertive' });
  const summary = h('section', { class: 'summary', 'aria-labelledby': 'summary-h' });
  const wavesList = h('ol', { class: 'waves' });
  const tbody = h('tbody');
  const waveFilter = h('select', { id: 'devices-wave' }, h('option', { value: '' }, 'All waves'));
  const stateFilter = h('select', { id: 'devices-state' }, h('option', { value: '' }, 'All states'), ...STATES.map((st) => h('option', { value: st }, stateLabel(st))));
  const devicesStatus = h('p', { class: 'muted small', id: 'devices-range', 'aria-live': 'polite' });
  const prevPage = h('button', { type: 'button', class: 'button secondary', id: 'devices-prev', disabled: true }, 'Previous');
  const nextPage = h('button', { type: 'button', class: 'button secondary', id: 'devices-next', disabled: true }, 'Next');
  const details = h('dl', { class: 'props' });
  replace(
    ctx.root,
    h('p', { class: 'breadcrumb' }, link('/rollouts', 'Rollouts'), ' / ', h('code', null, id)),
    h('div', { class: 'page-header' }, title, statusHolder),
    liveIndicator,
    haltPanel,
    approvalPanel,
    actions,
    actionStatus,
    summary,
    h('section', { 'aria-labelledby': 'waves-h' }, h('h2', { id: 'waves-h' }, 'Waves'), wavesList),
    h(
      'section',
      { 'aria-labelledby': 'devices-h' },
      h('h2', { id: 'devices-h' }, 'Devices'),
      h('div', { class: 'filters', role: 'search', 'aria-label': 'Filter devices' }, field('Wave', waveFilter), field('State', stateFilter)),
      devicesStatus,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'devices-table', id: 'rollout-devices' },
          h('caption', { class: 'visually-hidden' }, 'Devices of the rollout with their wave and current state, a page at a time'),
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              ['Device', 'Wave', 'State', 'Reason', 'Updated'].map((c) => h('th', { scope: 'col' }, c)),
            ),
          ),
          tbody,
        ),
      ),
      h('div', { class: 'button-row', 'aria-label': 'Device pages' }, prevPage, nextPage),
    ),
    h('section', { 'aria-labelledby': 'details-h' }, h('h2', { id: 'details-h' }, 'Details'), details),
  );

  let actionsKey = '';
  let rows = new Map<string, Row>();
  let rowOrder = '';
  let busy = false;

  function renderActions(r: RolloutSummary): void {
    const active = r.status === 'running' || r.status === 'waiting_approval' || r.status === 'halted';
    const key = `${r.status}:${r.currentWave}`;
    if (key === actionsKey) return;
    actionsKey = key;
    const buttons: HTMLElement[] = [];
    const run = async (action: string, body?: unknown) => {
      if (busy) return;
      busy = true;
      actions.querySelectorAll('button').forEach((b) => (b.disabled = true));
      replace(actionStatus, h('p', { class: 'muted' }, `${action[0]!.toUpperCase()}${action.slice(1)}…`));
      try {
        // Answered with the summary: the view keeps its own page of devices.
        const fresh = await request<RolloutSummary>('POST', `${path}/${action}`, { query: { view: 'summary' }, ...(body !== undefined ? { body } : {}) });
        replace(actionStatus);
        actionsKey = '';
        update(fresh);
      } catch (err) {
        replace(actionStatus, errorBox(err));
        actionsKey = '';
        update(rollout);
      } finally {
        busy = false;
      }
    };
    if (r.status === 'waiting_approval' && can(ctx.me, 'approve')) {
      buttons.push(h('button', { type: 'button', class: 'button', onclick: () => void run('approve') }, `Approve wave ${waitingWave(r) + 1}`));
    }
    if (r.status === 'halted' && can(ctx.me, 'approve')) {
      buttons.push(h('button', { type: 'button', class: 'button', onclick: () => void run('resume') }, 'Resume rollout'));
    }
    if (active && can(ctx.me, 'rollouts.manage')) {
      const keep = h('input', { type: 'radio', name: 'abort-policy', value: 'keep', id: 'abort-keep', checked: true });
      const revert = h('input', { type: 'radio', name: 'abort-policy', value: 'revert', id: 'abort-revert' });
      const confirmAbort = h(
        'button',
        { type: 'button', class: 'button danger', onclick: () => void run('abort', { policy: revert.checked ? 'revert' : 'keep' }) },
        'Abort rollout',
      );
      const box = h(
        'div',
        { class: 'confirm', hidden: true, id: 'abort-confirm' },
        h(
          'fieldset',
          null,
          h('legend', null, 'After aborting, devices that already updated…'),
          h('div', { class: 'check' }, keep, h('label', { for: 'abort-keep' }, 'keep the new version (policy keep)')),
          h('div', { class: 'check' }, revert, h('label', { for: 'abort-revert' }, 'go back to their previous version (policy revert)')),
        ),
        h(
          'div',
          { class: 'button-row' },
          confirmAbort,
          h(
            'button',
            {
              type: 'button',
              class: 'button secondary',
              onclick: () => {
                box.hidden = true;
                open.setAttribute('aria-expanded', 'false');
                open.focus();
              },
            },
            'Cancel',
          ),
        ),
      );
      const open = h(
        'button',
        {
          type: 'button',
          class: 'button danger-outline',
          'aria-expanded': 'false',
          'aria-controls': 'abort-confirm',
          onclick: () => {
            box.hidden = false;
            open.setAttribute('aria-expanded', 'true');
            keep.focus();
          },
        },
        'Abort…',
      );
      buttons.push(open);
      replace(actions, h('div', { class: 'button-row' }, ...buttons), box);
      return;
    }
    replace(actions, buttons.length ? h('div', { class: 'button-row' }, ...buttons) : null);
  }

  function renderRows(fleet: string, devices: readonly RolloutDevice[]): void {
    const order = devices.map((d) => d.name).join('\n');
    if (order !== rowOrder) {
      rowOrder = order;
      rows = new Map();
      replace(tbody);
      for (const d of devices) {
        const state = h('td');
        const reason = h('td', { class: 'reason' });
        const updated = h('td');
        const tr = h(
          'tr',
          { dataset: { device: d.name } },
          h('th', { scope: 'row' }, link(`/devices/${encodeURIComponent(fleet)}/${encodeURIComponent(d.name)}`, d.name)),
          h('td', null, String(d.wave + 1)),
          state,
          reason,
          updated,
        );
        tbody.append(tr);
        rows.set(d.name, { tr, state, reason, updated, last: '' });
      }
    }
    for (const d of devices) {
      const row = rows.get(d.name)!;
      const sig = `${d.state}|${d.reason}|${d.updatedAt}|${d.revert?.state ?? ''}`;
      if (sig === row.last) continue;
      const changed = row.last !== '' && !row.last.startsWith(`${d.state}|`);
      row.last = sig;
      row.tr.dataset.state = d.state;
      replace(
        row.state,
        stateBadge(d.state),
        d.revert ? h('span', { class: 'muted small' }, ` (revert${d.revert.toVersion ? ` to ${d.revert.toVersion}` : ''})`) : null,
        d.decommissioned ? h('span', { class: 'muted small' }, ' (decommissioned)') : null,
      );
      replace(row.reason, d.reason || (d.assignedAt ? '' : h('span', { class: 'muted' }, 'wave not started')));
      replace(row.updated, d.updatedAt ? time(d.updatedAt) : '–');
      if (changed) {
        row.tr.classList.remove('flash');
        void row.tr.offsetWidth;
        row.tr.classList.add('flash');
      }
    }
  }

  // --- the device table: one page of a filter, in plan order. `cursors[i]` is the `after` of
  // page i (undefined for the first); reading again keeps the page, so rows update in place.
  let cursors: Array<number | undefined> = [undefined];
  let pageNo = 0;
  let reading = false;
  let readAgain = false;

  /** How many devices the filter matches, from the summary's counts. */
  function filteredTotal(r: RolloutSummary): number {
    const wave = waveFilter.value === '' ? undefined : r.waves[Number(waveFilter.value)];
    const counts = wave ? wave.counts : r.counts;
    return stateFilter.value === '' ? (wave ? wave.devices : sum(r.counts)) : (counts[stateFilter.value as keyof typeof counts] ?? 0);
  }

  const filterKey = () => `${waveFilter.value}|${stateFilter.value}`;

  /** Reads the current page; a read asked for meanwhile runs after it, with what is asked then. */
  async function readDevices(): Promise<void> {
    if (reading) {
      readAgain = true;
      return;
    }
    reading = true;
    // Paging waits for the page in hand: its `next` is what the next page starts after.
    prevPage.disabled = nextPage.disabled = true;
    try {
      do {
        readAgain = false;
        const at = pageNo;
        const key = filterKey();
        const page = await api.get<RolloutDevicesPage>(`${path}/devices`, {
          limit: PAGE_SIZE,
          after: cursors[at],
          wave: waveFilter.value,
          state: stateFilter.value,
        });
        if (ctx.left()) return;
        // A filter changed while this was read: its answer is for a table no longer shown.
        if (key !== filterKey() || at !== pageNo) continue;
        renderRows(rollout.fleet, page.items);
        cursors = cursors.slice(0, at + 1);
        if (page.next !== null) cursors.push(page.next);
        const first = at * PAGE_SIZE;
        text(devicesStatus, page.items.length === 0 ? 'No device matches.' : `Devices ${first + 1}–${first + page.items.length} of ${filteredTotal(rollout)}`);
      } while (readAgain);
    } catch (err) {
      replace(devicesStatus, errorBox(err));
    } finally {
      reading = false;
      prevPage.disabled = pageNo === 0;
      nextPage.disabled = cursors[pageNo + 1] === undefined;
    }
  }

  const goToPage = (n: number) => {
    pageNo = n;
    void readDevices();
  };
  prevPage.addEventListener('click', () => goToPage(Math.max(0, pageNo - 1)));
  nextPage.addEventListener('click', () => goToPage(pageNo + 1));
  const refilter = () => {
    cursors = [undefined];
    goToPage(0);
  };
  waveFilter.addEventListener('change', refilter);
  stateFilter.addEventListener('change', refilter);

  function update(r: RolloutSummary): void {
    // Older than what is shown (a stream's snapshot from before an action whose answer is
    // shown already, say through another replica): the next event brings the current state.
    if (r.updatedAt < rollout.updatedAt) return;
    rollout = r;
    if (ctx.left()) return;
    ctx.title(`Rollout ${r.artifact.name}@${r.artifact.version}`);
    replace(title, `${r.artifact.name}@${r.artifact.version}`, h('span', { class: 'title-sub' }, ` → ${r.fleet} / ${r.group}`));
    if (statusHolder.dataset.status !== r.status) {
      statusHolder.dataset.status = r.status;
      replace(statusHolder, h('span', { class: 'visually-hidden' }, 'Status: '), statusBadge(r.status));
    }

    if (r.halt && r.status === 'halted') {
      replace(
        haltPanel,
        h(
          'div',
          { class: 'notice notice-bad halt', role: 'alert', id: 'halt-reason' },
          h('h2', null, 'Rollout halted'),
          h('p', { class: 'halt-text' }, r.halt.reason),
          h('p', { class: 'small' }, `Wave ${r.halt.wave + 1}: ${r.halt.failures} failure(s), tolerance ${r.halt.tolerance}. Halted ${absolute(r.halt.at)}.`),
          can(ctx.me, 'approve') ? null : h('p', { class: 'small' }, 'Resuming needs a key with the approve right.'),
        ),
      );
    } else if (r.halt) {
      replace(haltPanel, h('div', { class: 'notice' }, h('strong', null, 'Earlier halt: '), r.halt.reason));
    } else replace(haltPanel);

    if (r.status === 'waiting_approval') {
      const index = waitingWave(r);
      const wave = r.waves[index];
      replace(
        approvalPanel,
        h(
          'div',
          { class: 'notice notice-attention', id: 'approval-needed' },
          h('strong', null, `Wave ${index + 1}${wave ? ` (up to ${wave.percent} %)` : ''} is waiting for approval.`),
          can(ctx.me, 'approve') ? ' Approve it to go on.' : ' A key with the approve right must approve it.',
        ),
      );
    } else replace(approvalPanel);

    renderActions(r);

    const finished = sum(r.counts, TERMINAL);
    const total = sum(r.counts);
    replace(
      summary,
      h('h2', { id: 'summary-h' }, 'Progress'),
      progressBar(finished, total, 'Devices finished', ` finished · ${r.counts.HEALTHY ?? 0} healthy`),
      stateBar(r.counts, 'Devices by state'),
    );

    const focusWave = r.status === 'waiting_approval' ? waitingWave(r) : r.status === 'running' || r.status === 'halted' ? r.currentWave : -1;
    replace(
      wavesList,
      r.waves.map((w) => {
        const done = sum(w.counts, TERMINAL);
        return h(
          'li',
          { class: `wave wave-${w.status}${w.index === focusWave ? ' current' : ''}`, dataset: { wave: String(w.index), status: w.status } },
          h('div', { class: 'wave-head' }, h('h3', null, `Wave ${w.index + 1}`), statusBadge(w.status)),
          h('p', { class: 'wave-meta muted' }, `up to ${w.percent} % · ${w.approval === 'manual' ? 'manual approval' : 'automatic'} · ${w.devices} device(s)`),
          progressBar(done, w.devices, `Wave ${w.index + 1} progress`),
          stateBar(w.counts, `Wave ${w.index + 1} states`),
          w.startedAt ? h('p', { class: 'small muted' }, `Started ${absolute(w.startedAt)}${w.startedBy ? ` by ${w.startedBy}` : ''}`) : null,
        );
      }),
    );

    if (waveFilter.options.length !== r.waves.length + 1) {
      replace(waveFilter, h('option', { value: '' }, 'All waves'), ...r.waves.map((w) => h('option', { value: String(w.index) }, `Wave ${w.index + 1}`)));
    }
    void readDevices();

    const p = r.probe;
    replace(
      details,
      ...[
        ['Rollout ID', h('code', null, r.id)],
        ['Artifact', `${r.artifact.name}@${r.artifact.version} (${r.artifact.kind})`],
        ['Fleet / group', `${r.fleet} / ${r.group}`],
        [
          'Probe',
          h(
            'span',
            null,
            `${p.type}`,
            p.attempts ? `, ${p.attempts} attempt(s)` : '',
            p.timeoutSeconds ? ` of ${p.timeoutSeconds} s` : '',
            ' ',
            h('code', null, JSON.stringify(p.spec)),
          ),
        ],
        ['Max failure rate', String(r.strategy?.max_failure_rate ?? 0)],
        ['Abort policy', r.abortPolicy ?? '–'],
        ['Created', `${absolute(r.createdAt)}${r.createdBy ? ` by ${r.createdBy}` : ''}`],
        ['Finished', r.finishedAt ? absolute(r.finishedAt) : '–'],
      ].flatMap(([k, v]) => [h('dt', null, k as string), h('dd', null, v as Node | string)]),
    );
  }

  update(rollout);

  // --- live updates
  let lastEvent = Date.now();
  const setLive = (mode: 'live' | 'polling' | 'reconnecting') => {
    const label = mode === 'live' ? 'Live: updates stream from the server' : mode === 'polling' ? `Live: refreshed every ${POLL_MS / 1000} s` : 'Reconnecting…';
    liveIndicator.dataset.mode = mode;
    replace(
      liveIndicator,
      h('span', { class: `dot dot-${mode}`, 'aria-hidden': 'true' }),
      ` ${label}`,
      h('span', { class: 'muted', 'data-updated': '' }, ` · last change ${ago(rollout.updatedAt)}`),
    );
  };
  let poller: ReturnType<typeof setInterval> | undefined;
  const startPolling = () => {
    if (poller) return;
    setLive('polling');
    poller = setInterval(async () => {
      try {
        update(await api.get<RolloutSummary>(`${path}/summary`));
        setLive('polling');
      } catch {
        setLive('reconnecting');
      }
    }, POLL_MS);
  };
  // The stream is opened with a single-use stream ticket minted with the key in the
  // Authorization header: the key never goes in a URL. The browser's own reconnect would
  // reuse a spent ticket, so every drop (and the server's `reconnect` at a stream's maximum
  // lifetime) closes the source and mints a fresh ticket here.
  let source: EventSource | undefined;
  let streaming = typeof EventSource === 'function';
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  const reconnect = (delayMs: number) => {
    source?.close();
    source = undefined;
    if (!streaming || reconnectTimer) return;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      void connect();
    }, delayMs);
  };
  const connect = async () => {
    let ticket: string;
    try {
      ticket = (await api.post<{ ticket: string }>('/stream-tickets')).ticket;
    } catch {
      setLive('reconnecting');
      reconnect(POLL_MS);
      return;
    }
    if (!streaming) return;
    const s = new EventSource(url(`${path}/events`, { ticket, view: 'summary' }));
    source = s;
    s.addEventListener('rollout', (ev) => {
      lastEvent = Date.now();
      try {
        update(JSON.parse((ev as MessageEvent<string>).data) as RolloutSummary);
      } catch {
        // a malformed event: the next one (or polling) repairs the view
      }
      setLive('live');
    });
    s.addEventListener('reconnect', () => reconnect(0));
    // A revoked key: minting the next ticket answers 401, which signs the console out.
    s.addEventListener('revoked', () => reconnect(0));
    s.onopen = () => {
      lastEvent = Date.now();
      setLive('live');
    };
    s.onerror = () => {
      // The fall-back to polling counts from the drop, not from the last change.
      if (liveIndicator.dataset.mode === 'live') lastEvent = Date.now();
      setLive('reconnecting');
      reconnect(POLL_MS);
    };
  };
  if (streaming) {
    setLive('reconnecting');
    void connect();
  } else startPolling();

  // Relative times age: refresh them, and fall back to polling if the stream went quiet while
  // reconnecting for long.
  const ticker = setInterval(() => {
    for (const t of ctx.root.querySelectorAll<HTMLTimeElement>('time[datetime]')) text(t, ago(t.dateTime));
    const upd = liveIndicator.querySelector('[data-updated]');
    if (upd) text(upd, ` · last change ${ago(rollout.updatedAt)}`);
    if (streaming && liveIndicator.dataset.mode === 'reconnecting' && Date.now() - lastEvent > 10_000) {
      streaming = false;
      reconnect(0);
      startPolling();
    }
  }, 1000);

  ctx.onLeave(() => {
    streaming = false;
    source?.close();
    if (reconnectTimer) clearTimeout(reconnectTimer);
    if (poller) clearInterval(poller);
    clearInterval(ticker);
  });
}
