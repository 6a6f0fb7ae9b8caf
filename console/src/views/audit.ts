// The audit log with the hash chain's status.
import { api, download, type Page } from '../api.js';
import { h, replace } from '../dom.js';
import { absolute, time } from '../format.js';
import type { AuditEvent, ChainStatus } from '../types.js';
import { empty, errorBox, loading, pageHeader, pager, setQuery, table, type ViewContext } from '../ui.js';

function chainNotice(c: ChainStatus): HTMLElement {
  if (c.verified) {
    return h(
      'div',
      { class: 'notice notice-good', id: 'chain-status', dataset: { verified: 'true' } },
      h('strong', null, h('span', { 'aria-hidden': 'true' }, '✓ '), 'Chain verified. '),
      `All ${c.count} event(s) link up to the head hash `,
      h('code', { class: 'hash' }, c.headHash),
      '.',
    );
  }
  return h(
    'div',
    { class: 'notice notice-bad', id: 'chain-status', role: 'alert', dataset: { verified: 'false' } },
    h('strong', null, h('span', { 'aria-hidden': 'true' }, '✕ '), 'Chain BROKEN'),
    c.firstBrokenSeq !== undefined ? ` at event #${c.firstBrokenSeq}` : '',
    c.problem ? `: ${c.problem}` : '.',
    ` (${c.count} event(s) checked). The trail was changed outside the server.`,
  );
}

export async function auditView(ctx: ViewContext): Promise<void> {
  ctx.title('Audit log');
  const offset = Number(ctx.query.get('offset') ?? 0) || 0;
  const chain = h('div', { 'aria-live': 'polite' }, loading());
  const results = h('div', null, loading());
  const exportStatus = h('div', { 'aria-live': 'polite' });
  const verify = async () => {
    replace(chain, h('p', { class: 'muted' }, 'Verifying the chain…'));
    try {
      replace(chain, chainNotice(await api.get<ChainStatus>('/audit/verify')));
    } catch (err) {
      replace(chain, errorBox(err));
    }
  };
  replace(
    ctx.root,
    pageHeader(
      'Audit log',
      h('button', { type: 'button', class: 'button secondary', onclick: () => void verify() }, 'Verify again'),
      h(
        'button',
        {
          type: 'button',
          class: 'button secondary',
          onclick: async () => {
            try {
              await download('/audit/export', 'meshanics-audit.ndjson');
              replace(exportStatus);
            } catch (err) {
              replace(exportStatus, errorBox(err));
            }
          },
        },
        'Export NDJSON',
      ),
    ),
    chain,
    exportStatus,
    results,
  );
  await verify();
  try {
    const page = await api.get<Page<AuditEvent>>('/audit', { limit: 50, offset });
    if (ctx.left()) return;
    replace(
      results,
      page.items.length
        ? table(
            'Audit events, newest first',
            ['#', 'When', 'Actor', 'Action', 'Subject', 'Details', 'Hash'],
            page.items.map((e) => [
              String(e.seq),
              h('span', { title: absolute(e.at) }, time(e.at)),
              e.actor,
              h('code', null, e.action),
              h('span', { class: 'subject' }, e.subject),
              Object.keys(e.details ?? {}).length ? h('details', null, h('summary', null, 'Show'), h('pre', null, JSON.stringify(e.details, null, 2))) : '–',
              h('code', { class: 'hash', title: `hash ${e.hash}\nprevious ${e.prevHash}` }, `${e.hash.slice(0, 10)}…`),
            ]),
          )
        : empty('No audit events.'),
      pager(page, (o) => setQuery('/audit', { offset: o })),
    );
  } catch (err) {
    replace(results, errorBox(err));
  }
}
