// The artifact catalog.
import { api, type Page } from '../api.js';
import { h, replace } from '../dom.js';
import { bytes, time } from '../format.js';
import type { Artifact } from '../types.js';
import { empty, errorBox, field, loading, pageHeader, pager, setQuery, table, type ViewContext } from '../ui.js';

export async function artifactsView(ctx: ViewContext): Promise<void> {
  ctx.title('Artifacts');
  const name = ctx.query.get('name') ?? '';
  const kind = ctx.query.get('kind') ?? '';
  const offset = Number(ctx.query.get('offset') ?? 0) || 0;
  const nameInput = h('input', { name: 'name', value: name });
  const kindInput = h('input', { name: 'kind', value: kind, placeholder: 'model, config, container…' });
  const results = h('div', null, loading());
  replace(
    ctx.root,
    pageHeader('Artifacts'),
    h(
      'form',
      {
        class: 'filters',
        role: 'search',
        'aria-label': 'Filter artifacts',
        onsubmit: (e: Event) => {
          e.preventDefault();
          setQuery('/artifacts', { name: nameInput.value.trim(), kind: kindInput.value.trim() });
        },
      },
      field('Name', nameInput),
      field('Kind', kindInput),
      h('button', { type: 'submit', class: 'button secondary' }, 'Filter'),
    ),
    h('p', { class: 'hint' }, 'Publish with ', h('code', null, 'meshanics artifacts publish FILE --name N --version V --kind K'), '.'),
    results,
  );
  try {
    const page = await api.get<Page<Artifact>>('/artifacts', { name: name || undefined, kind: kind || undefined, limit: 50, offset });
    if (ctx.left()) return;
    replace(
      results,
      page.items.length
        ? table(
            'Artifacts',
            ['Name', 'Version', 'Fleet', 'Kind', 'Size', 'SHA-256', 'TUF target', 'Published'],
            page.items.map((a) => [
              h('strong', null, a.name),
              a.version,
              a.fleet === '*' ? 'every fleet' : a.fleet,
              a.kind,
              bytes(a.length),
              h('code', { title: a.sha256 }, `${a.sha256.slice(0, 12)}…`),
              h('code', null, a.targetPath),
              time(a.createdAt),
            ]),
          )
        : empty('No artifacts.'),
      pager(page, (o) => setQuery('/artifacts', { name, kind, offset: o })),
    );
  } catch (err) {
    replace(results, errorBox(err));
  }
}
