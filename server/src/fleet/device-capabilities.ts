// A device is only ever given what it said it can handle: the artifact kinds its agent
// advertised in Register (one plugin each). A device that has not registered yet has said
// nothing; it may be assigned to, and its agent re-validates and refuses an unknown kind.
import type { ArtifactRecord, DeviceRecord } from '../store/index.js';
import { MeshError, nameSome } from '../errors.js';

function advertisedKinds(device: DeviceRecord): string[] {
  return device.capabilities.filter((c) => c.kind === 'ARTIFACT').map((c) => c.name);
}

export function assertDevicesSupportKind(devices: readonly DeviceRecord[], kind: string): void {
  const lacking = devices.filter((d) => d.registeredAt !== null && !advertisedKinds(d).includes(kind));
  if (lacking.length === 0) return;
  const described = lacking.map((d) => `${d.name} (advertises: ${advertisedKinds(d).join(', ') || 'nothing'})`);
  throw new MeshError('MESH_ERR_DEVICE_UNSUPPORTED_KIND', `device(s) ${nameSome(described, { separator: '; ' })} did not advertise artifact kind "${kind}" in Register`, {
    details: { devices: lacking.map((d) => d.name), kind },
  });
}

/**
 * An `agent` artifact (the agent package, issue 28) is built for one architecture; a device
 * says its own in Register (hardware.arch, Node's names: x64, arm64). A device that has not
 * registered has said nothing: its agent refuses another architecture itself.
 */
export function assertDevicesFitArtifact(devices: readonly DeviceRecord[], artifact: Pick<ArtifactRecord, 'kind' | 'spec' | 'name' | 'version'>): void {
  if (artifact.kind !== 'agent') return;
  const wanted = artifact.spec.architecture;
  const misfits = devices.filter((d) => d.hardware?.arch && d.hardware.arch !== wanted);
  if (misfits.length === 0) return;
  throw new MeshError(
    'MESH_ERR_DEVICE_ARCHITECTURE_MISMATCH',
    `agent package ${artifact.name}@${artifact.version} is for ${String(wanted)} but device(s) ${nameSome(misfits.map((d) => `${d.name} (${d.hardware!.arch})`))} run on another architecture`,
    { details: { devices: misfits.map((d) => d.name), architecture: wanted } },
  );
}
