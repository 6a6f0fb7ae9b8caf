// The console shell: sign-in, navigation and a hash router (#/rollouts/ID), so the static build
// works from any server path and reloads keep their place.
import { api, ApiError, can, setUnauthorizedHandler, storedKey, storeKey, type WhoAmI } from './api.js';
import { h, replace } from './dom.js';
import { errorBox, type View, type ViewContext } from './ui.js';
import { artifactsView } from './views/artifacts.js';
import { auditView } from './views/audit.js';
import { deviceView, devicesView } from './views/devices.js';
import { overviewView } from './views/overview.js';
import { rolloutDetailView } from './views/rollout-detail.js';
import { newRolloutView } from './views/rollout-new.js';
import { rolloutsView } from './views/rollouts.js';
import { signInView } from './views/signin.js';

interface Route {
  pattern: RegExp;
  view: View;
  nav: string;
}

const ROUTES: Route[] = [
  { pattern: /^\/?$/, view: overviewView, nav: 'overview' },
  { pattern: /^\/devices$/, view: devicesView, nav: 'devices' },
  { pattern: /^\/devices\/([^/]+)\/([^/]+)$/, view: deviceView, nav: 'devices' },
  { pattern: /^\/artifacts$/, view: artifactsView, nav: 'artifacts' },
  { pattern: /^\/rollouts$/, view: rolloutsView, nav: 'rollouts' },
  { pattern: /^\/rollouts\/new$/, view: newRolloutView, nav: 'rollouts' },
  { pattern: /^\/rollouts\/([^/]+)$/, view: rolloutDetailView, nav: 'rollouts' },
  { pattern: /^\/audit$/, view: auditView, nav: 'audit' },
];

const NAV: Array<{ id: string; label: string; route: string; permission?: string; allFleets?: boolean }> = [
  { id: 'overview', label: 'Overview', route: '/' },
  { id: 'devices', label: 'Devices', route: '/devices', permission: 'devices.read' },
  { id: 'artifacts', label: 'Artifacts', route: '/artifacts', permission: 'artifacts.read' },
  { id: 'rollouts', label: 'Rollouts', route: '/rollouts', permission: 'rollouts.read' },
  { id: 'audit', label: 'Audit log', route: '/audit', permission: 'audit.read', allFleets: true },
];

const app = document.getElementById('app')!;
let me: WhoAmI | null = null;
const leaveCurrent: Array<() => void> = [];
let generation = 0;
let signInMessage: string | undefined;

function leave(): void {
  for (const fn of leaveCurrent.splice(0)) {
    try {
      fn();
    } catch {
      // a view's cleanup must not stop the next view
    }
  }
}

export function signOut(message?: string): void {
  leave();
  storeKey(null);
  me = null;
  signInMessage = message;
  void render();
}

setUnauthorizedHandler((message) => signOut(`Signed out: ${message}`));

function shell(current: string): { main: HTMLElement } {
  const navList = h(
    'ul',
    null,
    NAV.filter((n) => (!n.permission || can(me, n.permission)) && (!n.allFleets || me?.fleet === '*')).map((n) =>
      h('li', null, h('a', { href: `#${n.route}`, 'aria-current': n.id === current ? 'page' : undefined }, n.label)),
    ),
  );
  const main = h('main', { id: 'main', tabindex: '-1' });
  replace(
    app,
    h('a', { class: 'skip-link', href: '#main', onclick: (e: Event) => (e.preventDefault(), main.focus()) }, 'Skip to content'),
    h(
      'header',
      { class: 'topbar' },
      h('a', { class: 'brand', href: '#/' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, '◆'), ' Meshanics'),
      h('nav', { class: 'mainnav', 'aria-label': 'Main' }, navList),
      h(
        'div',
        { class: 'whoami' },
        h('span', { class: 'key-name', title: `permissions: ${me!.permissions.join(', ') || 'none'}${me!.approve ? ', approve' : ''}` }, me!.name),
        h('span', { class: 'muted' }, ` · fleet ${me!.fleet === '*' ? 'all' : me!.fleet}`),
        h('button', { type: 'button', class: 'button secondary small', onclick: () => signOut('Signed out.') }, 'Sign out'),
      ),
    ),
    main,
  );
  return { main };
}

function parseHash(): { path: string; query: URLSearchParams } {
  const raw = location.hash.replace(/^#/, '') || '/';
  const q = raw.indexOf('?');
  return { path: q >= 0 ? raw.slice(0, q) : raw, query: new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '') };
}

async function render(): Promise<void> {
  const gen = ++generation;
  leave();
  const key = storedKey();
  if (!key) {
    document.title = 'Sign in · Meshanics';
    signInView(app, signInMessage, (who) => {
      me = who;
      signInMessage = undefined;
      void render();
    });
    return;
  }
  if (!me) {
    try {
      me = await api.get<WhoAmI>('/whoami');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return; // the handler signed out
      replace(app, h('main', { id: 'main' }, errorBox(err), h('button', { type: 'button', class: 'button', onclick: () => void render() }, 'Try again')));
      return;
    }
  }
  if (gen !== generation) return;
  const { path, query } = parseHash();
  const route = ROUTES.find((r) => r.pattern.test(path));
  const { main } = shell(route?.nav ?? '');
  if (!route) {
    document.title = 'Not found · Meshanics';
    replace(main, h('h1', null, 'Not found'), h('p', null, 'No page at ', h('code', null, path), '. ', h('a', { href: '#/' }, 'Go to the overview'), '.'));
    return;
  }
  const params = (route.pattern.exec(path) ?? []).slice(1).map((p) => decodeURIComponent(p));
  const ctx: ViewContext = {
    me,
    params,
    query,
    root: main,
    title: (t) => {
      document.title = `${t} · Meshanics`;
    },
    onLeave: (fn) => {
      if (gen !== generation) fn();
      else leaveCurrent.push(fn);
    },
    navigate: (r) => {
      location.hash = `#${r}`;
    },
    left: () => gen !== generation,
  };
  try {
    await route.view(ctx);
  } catch (err) {
    if (gen === generation) main.append(errorBox(err));
  }
}

window.addEventListener('hashchange', () => void render());
void render();
