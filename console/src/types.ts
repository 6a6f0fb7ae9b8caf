// What the REST API answers (docs/operator-api.md): declared once in the operator CLI's
// cli/src/api-types.ts; `export type` is erased, so no CLI code reaches the browser.

export type {
  Artifact,
  AuditEvent,
  ChainStatus,
  DeviceDetail,
  DeviceSummary,
  Group,
  LogRequest,
  Rollout,
  RolloutDevice,
  RolloutDevicesPage,
  RolloutSummary,
  Wave,
} from '@meshanics/cli/api-types';

export const ACTIVE_STATUSES = ['running', 'waiting_approval', 'halted'] as const;
