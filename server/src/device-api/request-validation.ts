// The device API re-validates everything a device sends: a compromised or buggy agent must
// not be able to store unbounded or malformed data. Limits are generous for real agents.
import {
  ARTIFACT_NAME,
  ARTIFACT_STATES,
  ARTIFACT_VERSION,
  isArtifactState,
  type ArtifactState,
  type Capability,
  type HardwareProfile,
  type HeartbeatRequest,
  type RegisterRequest,
  type ReportArtifactStatusRequest,
} from '@meshanics/core/contract';
import type { DeviceProfile, InstalledRecord } from '../store/index.js';

export class InvalidRequest extends Error {}

const MAX_TAGS = 64;
const MAX_CAPABILITIES = 64;
const MAX_INSTALLED = 256;
const MAX_TEXT = 256;
const MAX_REASON = 2048;
const TAG_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,62}[A-Za-z0-9])?$/;
const PLUGIN_NAME = /^[a-z][a-z0-9-]{0,62}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

function text(value: unknown, field: string, max = MAX_TEXT): string {
  const s = typeof value === 'string' ? value : '';
  if (s.length > max) throw new InvalidRequest(`${field} is longer than ${max} characters`);
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this refuses
  if (/[\u0000-\u001f\u007f]/.test(s)) throw new InvalidRequest(`${field} contains control characters`);
  return s;
}

function count(value: unknown, field: string): number {
  const n = typeof value === 'number' ? value : 0;
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidRequest(`${field} must be a non-negative integer`);
  return n;
}

function hardware(h: HardwareProfile | null): HardwareProfile | null {
  if (!h) return null;
  const accelerators = Array.isArray(h.accelerators) ? h.accelerators : [];
  if (accelerators.length > 32) throw new InvalidRequest('hardware.accelerators has more than 32 entries');
  return {
    model: text(h.model, 'hardware.model'),
    soc: text(h.soc, 'hardware.soc'),
    arch: text(h.arch, 'hardware.arch'),
    cpuCores: count(h.cpuCores, 'hardware.cpuCores'),
    memoryBytes: count(h.memoryBytes, 'hardware.memoryBytes'),
    accelerators: accelerators.map((a, i) => text(a, `hardware.accelerators[${i}]`)),
    os: text(h.os, 'hardware.os'),
    kernel: text(h.kernel, 'hardware.kernel'),
  };
}

export function validateRegister(req: RegisterRequest): DeviceProfile {
  const tags = Object.entries(req.tags ?? {});
  if (tags.length > MAX_TAGS) throw new InvalidRequest(`more than ${MAX_TAGS} tags`);
  for (const [key, value] of tags) {
    if (!TAG_KEY.test(key)) throw new InvalidRequest(`tag key "${key.slice(0, 64)}" must match ${TAG_KEY.source}`);
    text(value, `tags.${key}`);
  }
  const capabilities = req.capabilities ?? [];
  if (capabilities.length > MAX_CAPABILITIES) throw new InvalidRequest(`more than ${MAX_CAPABILITIES} capabilities`);
  const caps: Capability[] = capabilities.map((c, i) => {
    if (c.kind !== 'ARTIFACT' && c.kind !== 'PROBE') throw new InvalidRequest(`capabilities[${i}].kind must be ARTIFACT or PROBE`);
    if (!PLUGIN_NAME.test(c.name)) throw new InvalidRequest(`capabilities[${i}].name must match ${PLUGIN_NAME.source}`);
    return { kind: c.kind, name: c.name, version: text(c.version, `capabilities[${i}].version`, 64) };
  });
  return {
    hardware: hardware(req.hardware),
    agentVersion: text(req.agentVersion, 'agentVersion', 64),
    tags: Object.fromEntries(tags),
    capabilities: caps,
  };
}

export function validateHeartbeat(req: HeartbeatRequest): Omit<InstalledRecord, 'updatedAt'>[] {
  const installed = req.installed ?? [];
  if (installed.length > MAX_INSTALLED) throw new InvalidRequest(`more than ${MAX_INSTALLED} installed artifacts`);
  const seen = new Set<string>();
  return installed.map((i, n) => {
    if (!ARTIFACT_NAME.test(i.name)) throw new InvalidRequest(`installed[${n}].name must match ${ARTIFACT_NAME.source}`);
    if (seen.has(i.name)) throw new InvalidRequest(`installed[${n}].name "${i.name}" is listed twice`);
    seen.add(i.name);
    if (!ARTIFACT_VERSION.test(i.version)) throw new InvalidRequest(`installed[${n}].version must match ${ARTIFACT_VERSION.source}`);
    if (!PLUGIN_NAME.test(i.kind)) throw new InvalidRequest(`installed[${n}].kind must match ${PLUGIN_NAME.source}`);
    if (!SHA256_HEX.test(i.sha256)) throw new InvalidRequest(`installed[${n}].sha256 must be 64 lowercase hex digits`);
    if (!isArtifactState(i.state)) throw new InvalidRequest(`installed[${n}].state must be one of ${ARTIFACT_STATES.join(', ')}`);
    return { name: i.name, kind: i.kind, version: i.version, sha256: i.sha256, state: i.state };
  });
}

export interface ValidReport {
  assignmentId: string;
  state: ArtifactState;
  sequence: number;
  reason: string;
  bytesDone: number;
  bytesTotal: number;
  deviceTime: string;
}

export function validateReport(req: ReportArtifactStatusRequest): ValidReport {
  const assignmentId = text(req.assignmentId, 'assignmentId', 64);
  if (assignmentId === '') throw new InvalidRequest('assignmentId is required');
  if (!isArtifactState(req.state)) throw new InvalidRequest(`state must be one of ${ARTIFACT_STATES.join(', ')}`);
  const deviceTime = text(req.deviceTime, 'deviceTime', 64);
  if (deviceTime !== '' && Number.isNaN(Date.parse(deviceTime))) throw new InvalidRequest('deviceTime must be RFC 3339');
  return {
    assignmentId,
    state: req.state,
    sequence: count(req.sequence, 'sequence'),
    reason: text(req.reason, 'reason', MAX_REASON),
    bytesDone: count(req.bytesDone, 'bytesDone'),
    bytesTotal: count(req.bytesTotal, 'bytesTotal'),
    deviceTime,
  };
}
