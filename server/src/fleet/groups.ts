// Static device groups: a named list of device names in one fleet. Names are kept as given
// and resolved whenever the group is read or used, so a name that does not resolve to a
// live device of the fleet comes back in `unresolved` instead of being dropped silently.
import type { MeshanicsContext } from '../config/data-dir.js';
import { MeshError } from '../errors.js';
import type { DeviceRecord, GroupRecord } from '../store/index.js';

export const GROUP_NAME = /^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$/;
// The issue-30 scale: a rollout reaches a fleet of 100,000 through one group. Over the REST API
// the request must also fit its 4 MiB body (100,000 names of up to ~38 characters; a larger
// body is refused with 413 before this is checked).
export const MAX_GROUP_DEVICES = 100_000;

export interface GroupView {
  fleet: string;
  name: string;
  /** Names that resolve to a device of the fleet that is not decommissioned, in the given order. */
  devices: string[];
  /** Names that do not (unknown, or decommissioned), in the given order. */
  unresolved: string[];
  createdAt: string;
  createdBy: string;
  updatedAt: string;
}

export interface CreateGroupInput {
  fleet: string;
  name: string;
  devices: string[];
  actor: string;
}

type GroupContext = Pick<MeshanicsContext, 'store'>;

function validateDevices(devices: unknown): string[] {
  if (!Array.isArray(devices)) throw new MeshError('MESH_ERR_GROUP_INVALID', 'devices must be an array of device names');
  if (devices.length > MAX_GROUP_DEVICES) {
    throw new MeshError('MESH_ERR_GROUP_INVALID', `devices must not have more than ${MAX_GROUP_DEVICES} items`);
  }
  const names: string[] = [];
  const seen = new Set<string>();
  devices.forEach((d, i) => {
    if (typeof d !== 'string' || d === '' || d.length > 253) {
      throw new MeshError('MESH_ERR_GROUP_INVALID', `devices/${i} must be a non-empty device name`);
    }
    // Duplicates collapse to one member: listing a device twice does not put it in two waves.
    if (!seen.has(d)) names.push(d);
    seen.add(d);
  });
  return names;
}

function validateName(fleet: unknown, name: unknown): void {
  if (typeof fleet !== 'string' || fleet === '') throw new MeshError('MESH_ERR_GROUP_INVALID', 'fleet is required');
  if (typeof name !== 'string' || !GROUP_NAME.test(name)) {
    throw new MeshError('MESH_ERR_GROUP_INVALID', `group name must match ${GROUP_NAME.source}, got ${JSON.stringify(name)}`);
  }
}

/** Resolves names to live devices of the fleet; the rest are unresolved. */
export async function resolveGroupDevices(ctx: GroupContext, fleet: string, names: readonly string[]): Promise<{ devices: DeviceRecord[]; unresolved: string[] }> {
  const byName = await ctx.store.getDevicesByNames(fleet, names);
  const devices: DeviceRecord[] = [];
  const unresolved: string[] = [];
  for (const name of names) {
    const device = byName.get(name);
    if (device && !device.decommissionedAt) devices.push(device);
    else unresolved.push(name);
  }
  return { devices, unresolved };
}

async function view(ctx: GroupContext, g: GroupRecord): Promise<GroupView> {
  const { devices, unresolved } = await resolveGroupDevices(ctx, g.fleet, g.devices);
  return {
    fleet: g.fleet,
    name: g.name,
    devices: devices.map((d) => d.name),
    unresolved,
    createdAt: g.createdAt,
    createdBy: g.createdBy,
    updatedAt: g.updatedAt,
  };
}

export async function createGroup(ctx: GroupContext, input: CreateGroupInput): Promise<GroupView> {
  validateName(input.fleet, input.name);
  const names = validateDevices(input.devices);
  const { store } = ctx;
  return await store.withWriteLock(async () => {
    const now = new Date().toISOString();
    const record: GroupRecord = { fleet: input.fleet, name: input.name, devices: names, createdAt: now, createdBy: input.actor, updatedAt: now };
    if (!(await store.groups.insert(record))) {
      throw new MeshError('MESH_ERR_GROUP_CONFLICT', `group "${input.name}" already exists in fleet ${input.fleet}`);
    }
    const result = await view(ctx, record);
    await store.appendAudit({
      at: now,
      actor: input.actor,
      action: 'group.created',
      subject: `group:${input.fleet}/${input.name}`,
      details: { devices: result.devices, unresolved: result.unresolved },
    });
    return result;
  });
}

export async function listGroups(ctx: GroupContext, filter: { fleet?: string } = {}): Promise<GroupView[]> {
  const views: GroupView[] = [];
  for (const g of await ctx.store.groups.list(filter.fleet === undefined ? {} : { fleet: filter.fleet })) views.push(await view(ctx, g));
  return views;
}

export async function getGroup(ctx: GroupContext, fleet: string, name: string): Promise<GroupView> {
  const g = await ctx.store.groups.get(fleet, name);
  if (!g) throw new MeshError('MESH_ERR_GROUP_NOT_FOUND', `no group "${name}" in fleet ${fleet}`);
  return view(ctx, g);
}

/** Replaces the group's device names (rollouts already created keep their own device split). */
export async function setGroupDevices(ctx: GroupContext, fleet: string, name: string, devices: string[], actor: string): Promise<GroupView> {
  const names = validateDevices(devices);
  const { store } = ctx;
  return await store.withWriteLock(async () => {
    const now = new Date().toISOString();
    if (!(await store.groups.setDevices(fleet, name, names, now))) {
      throw new MeshError('MESH_ERR_GROUP_NOT_FOUND', `no group "${name}" in fleet ${fleet}`);
    }
    const result = await getGroup(ctx, fleet, name);
    await store.appendAudit({
      at: now,
      actor,
      action: 'group.devices_set',
      subject: `group:${fleet}/${name}`,
      details: { devices: result.devices, unresolved: result.unresolved },
    });
    return result;
  });
}
