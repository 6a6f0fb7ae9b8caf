// A device is only ever given what it said it can handle: the artifact kinds its agent
// advertised in Register (one plugin each). A device that has not registered yet has said
// nothing; it may be assigned to, and its agent re-validates and refuses an unknown kind.
import type { DeviceRecord } from '../store/index.js';
import { MeshError } from '../errors.js';

function advertisedKinds(device: DeviceRecord): string[] {
  return device.capabilities.filter((c) => c.kind === 'ARTIFACT').map((c) => c.name);
}

export function assertDevicesSupportKind(devices: readonly DeviceRecord[], kind: string): void {
  const lacking = devices.filter((d) => d.registeredAt !== null && !advertisedKinds(d).includes(kind));
  if (lacking.length === 0) return;
  const described = lacking.map((d) => `${d.name} (advertises: ${advertisedKinds(d).join(', ') || 'nothing'})`);
  throw new MeshError(
    'MESH_ERR_DEVICE_UNSUPPORTED_KIND',
    `device(s) ${described.join('; ')} did not advertise artifact kind "${kind}" in Register`,
    { details: { devices: lacking.map((d) => d.name), kind } },
  );
}
