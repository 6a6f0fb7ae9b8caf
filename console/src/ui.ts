// Shared pieces of the views: the view contract, headings, errors, pagers, tables.
import { ApiError, type Page, type WhoAmI } from './api.js';
import { type Child, h } from './dom.js';

export interface ViewContext {
  me: WhoAmI;
  /** Route parameters, decoded. */
  params: string[];
  query: URLSearchParams;
  root: HTMLElement;
  title(text: string): void;
  /** Runs when the view is left (stop streams and timers). */
  onLeave(fn: () => void): void;
  navigate(route: string): void;
  /** True once the view was left: async work should stop touching the page. */
  left(): boolean;
}

export type View = (ctx: ViewContext) => Promise<void> | void;

export function pageHeader(title: Child, ...extra: Child[]): HTMLElement {
  return h('div', { class: 'page-header' }, h('h1', null, title), extra.length ? h('div', { class: 'page-actions' }, ...extra) : null);
}

export function errorBox(err: unknown): HTMLElement {
  const status = err instanceof ApiError ? err.status : 0;
  const hint = status === 403 ? ' This API key lacks the permission.' : status === 404 ? " It does not exist, or it is outside this key's fleet." : '';
  return h('div', { class: 'notice notice-bad', role: 'alert' }, h('strong', null, status ? `Error ${status}: ` : 'Error: '), (err as Error).message ?? String(err), hint);
}

export function empty(text: string): HTMLElement {
  return h('p', { class: 'empty' }, text);
}

export function loading(): HTMLElement {
  return h('p', { class: 'muted', role: 'status' }, 'Loading…');
}

export function table(caption: string, headers: string[], rows: Child[][], options: { captionHidden?: boolean; className?: string } = {}): HTMLElement {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: options.className ?? '' },
      h('caption', { class: options.captionHidden === false ? '' : 'visually-hidden' }, caption),
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          headers.map((c) => h('th', { scope: 'col' }, c)),
        ),
      ),
      h(
        'tbody',
        null,
        rows.map((r) =>
          h(
            'tr',
            null,
            r.map((c) => h('td', null, c)),
          ),
        ),
      ),
    ),
  );
}

/** Previous / next for a list page. */
export function pager<T>(page: Page<T>, go: (offset: number) => void): HTMLElement | null {
  if (page.total <= page.limit && page.offset === 0) return null;
  const from = page.items.length ? page.offset + 1 : 0;
  const to = page.offset + page.items.length;
  return h(
    'nav',
    { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', class: 'button secondary', disabled: page.offset === 0, onclick: () => go(Math.max(0, page.offset - page.limit)) }, '← Previous'),
    h('span', null, `${from}–${to} of ${page.total}`),
    h('button', { type: 'button', class: 'button secondary', disabled: to >= page.total, onclick: () => go(page.offset + page.limit) }, 'Next →'),
  );
}

/** A labelled form field. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint ? h('p', { class: 'hint', id: hintId }, hint) : null);
}

/** Updates the hash query of the current route (keeps history tidy). */
export function setQuery(route: string, query: Record<string, string | number | undefined>): void {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '' && v !== 0) params.set(k, String(v));
  const qs = params.toString();
  location.hash = `#${route}${qs ? `?${qs}` : ''}`;
}

/**
 * Runs a re-render of `container` and puts the keyboard focus back on the equivalent element
 * (same tag, link target and text), so periodic refreshes never throw a keyboard user out.
 */
export function keepFocus(container: Element, render: () => void): void {
  const active = document.activeElement as HTMLElement | null;
  if (!active || active === document.body || !container.contains(active)) {
    render();
    return;
  }
  const key = (el: Element) => `${el.tagName}|${el.getAttribute('href') ?? ''}|${el.textContent ?? ''}`;
  const wanted = key(active);
  render();
  const again = [...container.querySelectorAll<HTMLElement>(active.tagName)].find((el) => key(el) === wanted);
  again?.focus();
}
