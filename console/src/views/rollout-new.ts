// Start a rollout: an artifact version, a group (existing, or new from picked devices), a probe,
// and waves.
import { api, ApiError, type Page } from '../api.js';
import { h, replace } from '../dom.js';
import type { Artifact, DeviceSummary, Group, Rollout } from '../types.js';
import { errorBox, field, pageHeader, type ViewContext } from '../ui.js';
import { deviceStatus } from './devices.js';

const PROBE_EXAMPLES: Record<string, string> = {
  file: '{ "path": "/run/app/ready" }',
  http: '{ "url": "http://127.0.0.1:8080/healthz", "expectStatus": 200 }',
  exec: '{ "command": "/usr/lib/app/healthcheck", "args": [] }',
};

/** `10, 50:manual, 100` -> waves (auto unless said). */
export function parseWaves(raw: string): Array<{ percent: number; approval: 'auto' | 'manual' }> {
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!items.length) throw new Error('give at least one wave, e.g. 100');
  return items.map((item) => {
    const m = /^(\d+(?:\.\d+)?)\s*%?\s*(?::\s*(auto|manual))?$/i.exec(item);
    if (!m) throw new Error(`"${item}" is not PERCENT or PERCENT:manual`);
    return { percent: Number(m[1]), approval: (m[2]?.toLowerCase() ?? 'auto') as 'auto' | 'manual' };
  });
}

/** The value at a path of keys in parsed JSON; undefined where a key is missing. */
function at(value: unknown, ...keys: string[]): unknown {
  for (const key of keys) value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
  return value;
}

async function probeTypes(): Promise<string[]> {
  try {
    const doc = await api.get<Record<string, unknown>>('/openapi.json');
    const schema = at(doc, 'paths', '/api/v1/rollouts', 'post', 'requestBody', 'content', 'application/json', 'schema');
    const types = at(schema, 'properties', 'probe', 'properties', 'type', 'enum');
    if (Array.isArray(types) && types.length) return types.map(String);
  } catch {
    // fall back to the shipped probe plugins
  }
  return ['file', 'http', 'exec'];
}

export async function newRolloutView(ctx: ViewContext): Promise<void> {
  ctx.title('New rollout');
  const fleetInput = h('input', { name: 'fleet', required: true, value: ctx.query.get('fleet') ?? (ctx.me.fleet !== '*' ? ctx.me.fleet : ''), readonly: ctx.me.fleet !== '*' });
  const artifactSelect = h('select', { name: 'artifact', required: true }, h('option', { value: '' }, 'Loading…'));
  const groupSelect = h('select', { name: 'group' });
  const newGroupName = h('input', { name: 'groupName', placeholder: 'e.g. canary', pattern: '[a-z0-9]([a-z0-9\\-]*[a-z0-9])?' });
  const deviceList = h('div', { class: 'checklist', role: 'group', 'aria-label': 'Devices of the new group' });
  const modeExisting = h('input', { type: 'radio', name: 'target', value: 'existing', id: 'target-existing' });
  const modeNew = h('input', { type: 'radio', name: 'target', value: 'new', id: 'target-new', checked: true });
  const probeType = h('select', { name: 'probeType' });
  const probeSpec = h('textarea', { name: 'probeSpec', rows: '3', spellcheck: 'false', class: 'mono' });
  const probeTimeout = h('input', { type: 'number', name: 'timeoutSeconds', min: '1', max: '300', placeholder: 'default' });
  const probeAttempts = h('input', { type: 'number', name: 'attempts', min: '1', max: '10', placeholder: 'default' });
  const probeDelay = h('input', { type: 'number', name: 'initialDelaySeconds', min: '0', placeholder: 'default' });
  const waves = h('input', { name: 'waves', value: '100', spellcheck: 'false' });
  const maxFailure = h('input', { type: 'number', name: 'maxFailureRate', min: '0', max: '0.99', step: '0.01', value: '0' });
  const status = h('div', { 'aria-live': 'assertive' });
  const submit = h('button', { type: 'submit', class: 'button' }, 'Start rollout');

  const existingBox = h('div', { class: 'subfields', hidden: true }, field('Group', groupSelect));
  const newBox = h('div', { class: 'subfields' }, field('New group name', newGroupName, 'Lowercase letters, digits and dashes.'), deviceList);
  const syncMode = () => {
    existingBox.hidden = !modeExisting.checked;
    newBox.hidden = !modeNew.checked;
  };
  modeExisting.addEventListener('change', syncMode);
  modeNew.addEventListener('change', syncMode);

  // The fleet can change while its devices load (typed, then the view's own first load): only
  // the answer to the latest request may fill the list, or an older fleet's devices could be
  // picked into the new group.
  let fleetRequest = 0;
  async function loadFleet(): Promise<void> {
    const request = ++fleetRequest;
    const current = () => request === fleetRequest && !ctx.left();
    const fleet = fleetInput.value.trim();
    if (!fleet) {
      replace(deviceList, h('p', { class: 'muted' }, 'Enter a fleet to pick its devices.'));
      replace(groupSelect);
      return;
    }
    try {
      const [groups, devices] = await Promise.all([api.get<Page<Group>>('/groups', { fleet, limit: 200 }), api.get<Page<DeviceSummary>>('/devices', { fleet, limit: 200 })]);
      if (!current()) return;
      replace(
        groupSelect,
        groups.items.length
          ? groups.items.map((g) => h('option', { value: g.name }, `${g.name} (${g.devices.length} devices)`))
          : h('option', { value: '' }, 'No groups in this fleet'),
      );
      const live = devices.items.filter((d) => !d.decommissionedAt);
      // A reload of the same fleet keeps what the operator already ticked.
      const ticked =
        deviceList.dataset.fleet === fleet ? new Set([...deviceList.querySelectorAll<HTMLInputElement>('input[name=device]:checked')].map((c) => c.value)) : new Set<string>();
      deviceList.dataset.fleet = fleet;
      const all = h('input', {
        type: 'checkbox',
        id: 'devices-all',
        checked: live.length > 0 && live.every((d) => ticked.has(d.name)),
        onchange: () => deviceList.querySelectorAll<HTMLInputElement>('input[name=device]').forEach((c) => (c.checked = all.checked)),
      });
      replace(
        deviceList,
        h('p', { class: 'label' }, `Devices of fleet ${fleet}`),
        live.length
          ? [
              h('div', { class: 'check' }, all, h('label', { for: 'devices-all' }, h('strong', null, 'All devices'))),
              live.map((d, i) =>
                h(
                  'div',
                  { class: 'check' },
                  h('input', { type: 'checkbox', name: 'device', value: d.name, id: `device-${i}`, checked: ticked.has(d.name) }),
                  h('label', { for: `device-${i}` }, d.name, h('span', { class: 'muted' }, ` (${deviceStatus(d)})`)),
                ),
              ),
            ]
          : h('p', { class: 'muted' }, 'No devices in this fleet.'),
      );
    } catch (err) {
      if (current()) replace(deviceList, errorBox(err));
    }
  }

  const form = h(
    'form',
    {
      class: 'stacked-form',
      'aria-labelledby': 'new-rollout-h',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        replace(status);
        const fleet = fleetInput.value.trim();
        const artifactRef = artifactSelect.value;
        const at = artifactRef.lastIndexOf('@');
        let spec: unknown;
        let strategy: unknown;
        try {
          if (!fleet) throw new Error('Fleet is required.');
          if (at <= 0) throw new Error('Pick an artifact version.');
          try {
            spec = probeSpec.value.trim() ? JSON.parse(probeSpec.value) : {};
          } catch (err) {
            throw new Error(`The probe spec is not valid JSON: ${(err as Error).message}`);
          }
          if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) throw new Error('The probe spec must be a JSON object.');
          const rate = Number(maxFailure.value || 0);
          strategy = { waves: parseWaves(waves.value), max_failure_rate: rate };
        } catch (err) {
          replace(status, h('p', { class: 'notice notice-bad', role: 'alert' }, (err as Error).message));
          return;
        }
        submit.disabled = true;
        try {
          let group = groupSelect.value;
          if (modeNew.checked) {
            group = newGroupName.value.trim();
            const picked = [...deviceList.querySelectorAll<HTMLInputElement>('input[name=device]:checked')].map((c) => c.value);
            if (!group) throw new Error('Name the new group.');
            if (!picked.length) throw new Error('Pick at least one device.');
            const created = await api.post<Group>('/groups', { fleet, name: group, devices: picked });
            if (created.unresolved.length) throw new Error(`These names match no device: ${created.unresolved.join(', ')}`);
          }
          if (!group) throw new Error('Pick a group.');
          const probe: Record<string, unknown> = { type: probeType.value, spec };
          if (probeTimeout.value) probe.timeoutSeconds = Number(probeTimeout.value);
          if (probeAttempts.value) probe.attempts = Number(probeAttempts.value);
          if (probeDelay.value) probe.initialDelaySeconds = Number(probeDelay.value);
          const rollout = await api.post<Rollout>('/rollouts', {
            fleet,
            artifact: { name: artifactRef.slice(0, at), version: artifactRef.slice(at + 1) },
            group,
            probe,
            strategy,
          });
          ctx.navigate(`/rollouts/${encodeURIComponent(rollout.id)}`);
        } catch (err) {
          replace(status, err instanceof ApiError ? errorBox(err) : h('p', { class: 'notice notice-bad', role: 'alert' }, (err as Error).message));
          submit.disabled = false;
        }
      },
    },
    field('Fleet', fleetInput),
    field('Artifact version', artifactSelect),
    h(
      'fieldset',
      null,
      h('legend', null, 'Devices'),
      h('div', { class: 'check' }, modeNew, h('label', { for: 'target-new' }, 'A new group of devices I pick')),
      h('div', { class: 'check' }, modeExisting, h('label', { for: 'target-existing' }, 'An existing group')),
      newBox,
      existingBox,
    ),
    h(
      'fieldset',
      null,
      h('legend', null, 'Health probe'),
      field('Type', probeType),
      field('Spec (JSON)', probeSpec, "The probe type's spec, checked by its plugin's schema on the server and again on each device."),
      h('div', { class: 'field-row' }, field('Timeout (s)', probeTimeout), field('Attempts', probeAttempts), field('Initial delay (s)', probeDelay)),
    ),
    h(
      'fieldset',
      null,
      h('legend', null, 'Waves'),
      field('Waves', waves, 'Cumulative percentages, the last 100; add :manual to wait for an approval before a wave, e.g. 10, 50:manual, 100.'),
      field('Max failure rate', maxFailure, "Failures tolerated, as a fraction of the rollout's devices, in [0, 1). 0 halts at the first failure."),
    ),
    status,
    h('div', { class: 'button-row' }, submit, h('a', { class: 'button secondary', href: '#/rollouts' }, 'Cancel')),
  );
  replace(ctx.root, pageHeader(h('span', { id: 'new-rollout-h' }, 'New rollout')), form);

  fleetInput.addEventListener('change', () => void loadFleet());
  probeType.addEventListener('change', () => {
    probeSpec.placeholder = PROBE_EXAMPLES[probeType.value] ?? '{}';
  });
  const [types, artifacts] = await Promise.all([probeTypes(), api.get<Page<Artifact>>('/artifacts', { limit: 200 }).catch((err: unknown) => err as Error)]);
  replace(
    probeType,
    types.map((t) => h('option', { value: t }, t)),
  );
  probeSpec.placeholder = PROBE_EXAMPLES[probeType.value] ?? '{}';
  if (artifacts instanceof Error) {
    replace(artifactSelect, h('option', { value: '' }, 'Cannot list artifacts'));
    status.append(errorBox(artifacts));
  } else {
    replace(
      artifactSelect,
      h('option', { value: '' }, artifacts.items.length ? 'Choose…' : 'No artifacts published'),
      artifacts.items.map((a) => h('option', { value: `${a.name}@${a.version}` }, `${a.name}@${a.version} (${a.kind})`)),
    );
    const wanted = ctx.query.get('artifact');
    if (wanted) artifactSelect.value = wanted;
  }
  // A fleet typed while the lists loaded has its own request in flight already.
  if (fleetRequest === 0) await loadFleet();
}
