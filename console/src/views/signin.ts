// Sign in with an API key; it is checked with /whoami and kept in sessionStorage only.
import { ApiError, request, storeKey, type WhoAmI } from '../api.js';
import { h, replace } from '../dom.js';

export function signInView(root: HTMLElement, message: string | undefined, done: (me: WhoAmI) => void): void {
  const input = h('input', {
    id: 'api-key',
    name: 'api-key',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'mesh_key_…',
    'aria-describedby': 'api-key-hint',
  });
  const status = h('div', { class: 'signin-status', 'aria-live': 'polite' }, message ? h('p', { class: 'notice' }, message) : null);
  const submit = h('button', { type: 'submit', class: 'button' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'signin-form',
      'aria-labelledby': 'signin-title',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        submit.disabled = true;
        replace(status, h('p', { class: 'muted' }, 'Checking the key…'));
        try {
          const me = await request<WhoAmI>('GET', '/whoami', { key });
          storeKey(key);
          done(me);
        } catch (err) {
          const text = err instanceof ApiError && err.status === 401 ? `The server refused this key: ${err.message}` : (err as Error).message;
          replace(status, h('p', { class: 'notice notice-bad', role: 'alert' }, text));
          submit.disabled = false;
          input.focus();
        }
      },
    },
    h('h1', { id: 'signin-title' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, '◆'), ' Meshanics console'),
    h('div', { class: 'field' }, h('label', { for: 'api-key' }, 'API key'), input),
    h('p', { class: 'hint', id: 'api-key-hint' }, 'Create one with ', h('code', null, 'meshanics-server apikey create'), '. It stays in this tab only (session storage).'),
    status,
    submit,
  );
  replace(root, h('main', { id: 'main', class: 'signin' }, form));
  input.focus();
}
