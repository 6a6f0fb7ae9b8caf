// Devices are split into waves once, in a stable order, and the split is stored: adding a
// device to the group later never reshuffles who was in the first wave.
import { createHash } from 'node:crypto';
import { cumulativeCounts, type Strategy } from './strategy.js';

export interface PlannedDevice {
  deviceId: string;
  wave: number;
  /** Position in the stable order (0-based). */
  position: number;
}

/** A stable, rollout-specific order: each rollout samples the fleet differently. */
export function stableOrder(rolloutId: string, deviceIds: readonly string[]): string[] {
  const key = (id: string) => createHash('sha256').update(`${rolloutId}\0${id}`).digest('hex');
  return [...new Set(deviceIds)]
    .map((id) => ({ id, k: key(id) }))
    .sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0))
    .map((x) => x.id);
}

export function planWaves(rolloutId: string, deviceIds: readonly string[], strategy: Strategy): PlannedDevice[] {
  const ordered = stableOrder(rolloutId, deviceIds);
  const counts = cumulativeCounts(strategy, ordered.length);
  return ordered.map((deviceId, position) => ({ deviceId, position, wave: counts.findIndex((c) => position < c) }));
}
