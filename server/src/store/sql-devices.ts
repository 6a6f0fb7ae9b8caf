// Devices for SqlStore: registration, liveness, decommissioning, and the installed sets that
// heartbeats report. Multi-statement writes run under the write lock.
import * as crypto from 'node:crypto';
import type { Db } from './db.js';
import { EMPTY_INSTALLED_DIGEST, installedDigest } from './installed-digest.js';
import { lockDevices } from './row-locks.js';
import {
  ARTIFACT_COLUMNS,
  ASSIGNMENT_COLUMNS,
  artifactFromRow,
  assignmentFromRow,
  deviceFromRow,
  forEachChunk,
  installedFromRow,
  num,
  REPORT_SLICE,
  rowSetParams,
  str,
  textRowSet,
  valueRows,
} from './sql-rows.js';
import type { CallingDevice, DeviceProfile, DeviceRecord, InstalledRecord, InstalledSetWrite, ReportingDevice } from './store.js';

/** Devices per last-seen UPDATE (one JSON parameter; bounds the statement's size). */
const TOUCH_CHUNK = 500;
const NAME_COLUMNS = ['name'] as const;
const SEEN_COLUMNS = ['id', 'at'] as const;
const CAS_DIGEST_COLUMNS = ['id', 'expected', 'digest'] as const;
/**
 * Heartbeats' installed sets per write transaction. On PostgreSQL a transaction that announces
 * more than about 220 devices (migration 7's 8,192-character list) announces all of them, and
 * its fence then makes every heartbeat of this replica read the database until it is back.
 */
const INSTALLED_SETS_PER_TRANSACTION = 200;

export class SqlDevices {
  constructor(
    private readonly db: Db,
    private readonly withWriteLock: <T>(fn: () => Promise<T>) => Promise<T>,
  ) {}

  async getDeviceById(id: string): Promise<DeviceRecord | undefined> {
    const r = await this.db.get('SELECT * FROM devices WHERE id = ?', [id]);
    return r ? deviceFromRow(r) : undefined;
  }

  async getDeviceBySpiffeId(spiffeId: string): Promise<DeviceRecord | undefined> {
    const r = await this.db.get('SELECT * FROM devices WHERE spiffe_id = ?', [spiffeId]);
    return r ? deviceFromRow(r) : undefined;
  }

  async getCallingDevice(spiffeId: string): Promise<CallingDevice | undefined> {
    // One statement for what every call needs: the device, and whether a log request waits
    // (rare), so a heartbeat runs the pending-requests query only when there is one.
    const r = await this.db.get(
      `SELECT d.*, EXISTS (SELECT 1 FROM log_requests l WHERE l.device_id = d.id AND l.fulfilled_at IS NULL) AS pending_logs
       FROM devices d WHERE d.spiffe_id = ?`,
      [spiffeId],
    );
    if (!r) return undefined;
    return {
      device: deviceFromRow(r),
      installedDigest: r.installed_digest == null ? null : str(r.installed_digest),
      // SQLite answers 0/1, PostgreSQL a boolean.
      pendingLogRequests: r.pending_logs === true || Number(r.pending_logs) === 1,
    };
  }

  async getReportingDevice(spiffeId: string, assignmentId: string): Promise<ReportingDevice | undefined> {
    // During a wave reports outnumber heartbeats that miss the cache, and three reads each
    // (device, assignment, artifact) were most of the database's statements (docs/benchmarks.md).
    const r = await this.db.get(
      `SELECT d.*, ${ASSIGNMENT_COLUMNS.map((c) => `a.${c} AS as_${c}`).join(', ')}, ${ARTIFACT_COLUMNS.map((c) => `ar.${c} AS ar_${c}`).join(', ')}
       FROM devices d
       LEFT JOIN assignments a ON a.id = @assignment AND a.device_id = d.id
       LEFT JOIN artifacts ar ON ar.id = a.artifact_id
       WHERE d.spiffe_id = @spiffe`,
      { assignment: assignmentId, spiffe: spiffeId },
    );
    if (!r) return undefined;
    return {
      device: deviceFromRow(r),
      ...(r.as_id == null ? {} : { assignment: assignmentFromRow(r, 'as_') }),
      ...(r.ar_id == null ? {} : { artifact: artifactFromRow(r, 'ar_') }),
    };
  }

  async getDeviceByName(fleet: string, name: string): Promise<DeviceRecord | undefined> {
    const r = await this.db.get('SELECT * FROM devices WHERE fleet = ? AND name = ?', [fleet, name]);
    return r ? deviceFromRow(r) : undefined;
  }

  async getDevicesByNames(fleet: string, names: readonly string[]): Promise<Map<string, DeviceRecord>> {
    // A statement per chunk of names, not per name: a rollout resolves its whole group inside
    // the write lock, and on PostgreSQL every statement is a round trip. The names come as one
    // row set (same statement text whatever their number), each looked up by (fleet, name).
    const found = new Map<string, DeviceRecord>();
    await forEachChunk(names, async (chunk) => {
      const rows = await this.db.all(`SELECT d.* FROM (${textRowSet(this.db.dialect, NAME_COLUMNS)}) AS n JOIN devices d ON d.fleet = ? AND d.name = n.name`, [
        ...rowSetParams(
          this.db.dialect,
          NAME_COLUMNS,
          chunk.map((name) => [name]),
        ),
        fleet,
      ]);
      for (const r of rows) {
        const device = deviceFromRow(r);
        found.set(device.name, device);
      }
    });
    return found;
  }

  async countDevices(): Promise<number> {
    return num((await this.db.get('SELECT COUNT(*) AS n FROM devices'))!.n);
  }

  ensureDevice(input: { spiffeId: string; fleet: string; name: string; now: string }): Promise<{ device: DeviceRecord; created: boolean }> {
    return this.withWriteLock(async () => {
      const existing = await this.getDeviceBySpiffeId(input.spiffeId);
      if (existing) return { device: existing, created: false };
      // A new device has installed nothing: its first heartbeat (reporting nothing) writes nothing.
      await this.db.run('INSERT INTO devices (id, spiffe_id, fleet, name, created_at, installed_digest) VALUES (?, ?, ?, ?, ?, ?)', [
        crypto.randomUUID(),
        input.spiffeId,
        input.fleet,
        input.name,
        input.now,
        EMPTY_INSTALLED_DIGEST,
      ]);
      return { device: (await this.getDeviceBySpiffeId(input.spiffeId))!, created: true };
    });
  }

  async registerDevice(input: { spiffeId: string; fleet: string; name: string; profile: DeviceProfile; now: string }): Promise<DeviceRecord> {
    const p = input.profile;
    await this.db.run(
      `INSERT INTO devices (id, spiffe_id, fleet, name, hardware, agent_version, tags, capabilities, created_at, registered_at, last_seen_at, installed_digest)
       VALUES (@id, @spiffeId, @fleet, @name, @hardware, @agentVersion, @tags, @capabilities, @now, @now, @now, @emptyInstalled)
       ON CONFLICT (spiffe_id) DO UPDATE SET
         hardware = excluded.hardware,
         agent_version = excluded.agent_version,
         tags = excluded.tags,
         capabilities = excluded.capabilities,
         registered_at = COALESCE(devices.registered_at, excluded.registered_at),
         last_seen_at = excluded.last_seen_at`,
      {
        id: crypto.randomUUID(),
        spiffeId: input.spiffeId,
        fleet: input.fleet,
        name: input.name,
        hardware: p.hardware ? JSON.stringify(p.hardware) : null,
        agentVersion: p.agentVersion,
        tags: JSON.stringify(p.tags),
        capabilities: JSON.stringify(p.capabilities),
        now: input.now,
        emptyInstalled: EMPTY_INSTALLED_DIGEST,
      },
    );
    return (await this.getDeviceBySpiffeId(input.spiffeId))!;
  }

  recordHeartbeat(deviceId: string, installed: Omit<InstalledRecord, 'updatedAt'>[], now: string): Promise<void> {
    return this.withWriteLock(async () => {
      await this.db.run('UPDATE devices SET last_seen_at = ? WHERE id = ?', [now, deviceId]);
      await this.replaceInstalled(deviceId, installed, now);
    });
  }

  async touchLastSeen(entries: ReadonlyArray<{ deviceId: string; at: string }>): Promise<void> {
    if (entries.length === 0) return;
    // One statement per chunk (UPDATE ... FROM, on both engines), one transaction for the
    // batch, taking no global lock: on PostgreSQL the devices' rows are locked first, in id
    // order across the whole batch (row-locks.ts), so flushes of several replicas and status
    // report batches cannot deadlock on each other's row locks. Never moves last_seen_at backwards (a status report,
    // committed directly, may have set a later time in the meantime).
    // Relaxed durability: a liveness time lost to a power cut is rewritten by the device's
    // next heartbeat, and not paying an fsync per flush keeps the event loop free for calls.
    const sorted = [...entries].sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
    await this.db.writeTransaction(
      async () => {
        for (let i = 0; i < sorted.length; i += TOUCH_CHUNK) {
          const chunk = sorted.slice(i, i + TOUCH_CHUNK);
          await lockDevices(
            this.db,
            chunk.map((e) => e.deviceId),
          );
          await this.db.run(
            `UPDATE devices SET last_seen_at = seen.at FROM (${textRowSet(this.db.dialect, SEEN_COLUMNS)}) AS seen
           WHERE devices.id = seen.id AND (devices.last_seen_at IS NULL OR devices.last_seen_at < seen.at)`,
            [
              ...rowSetParams(
                this.db.dialect,
                SEEN_COLUMNS,
                chunk.map((e) => [e.deviceId, e.at]),
              ),
            ],
          );
        }
      },
      { relaxedDurability: true, lock: 'rows' },
    );
  }

  async replaceInstalledSets(entries: ReadonlyArray<InstalledSetWrite>): Promise<string[]> {
    // Compare-and-set on the digest: a set waits up to a flush interval for its batch, and a
    // HEALTHY report committed meanwhile stored a newer one that this write must not undo.
    // Skipped, nothing is lost: every heartbeat lists the whole set, and the next one is
    // compared with the digest as it then stands. Relaxed durability for the same reason: a
    // set lost to a power cut is sent again.
    // No global lock: each chunk locks its devices first, in id order (row-locks.ts).
    const written: string[] = [];
    for (let i = 0; i < entries.length; i += INSTALLED_SETS_PER_TRANSACTION) {
      const chunk = entries.slice(i, i + INSTALLED_SETS_PER_TRANSACTION);
      const locked = async () => {
        await lockDevices(
          this.db,
          chunk.map((e) => e.deviceId),
        );
        return this.replaceInstalledChunk(chunk);
      };
      written.push(...(await this.db.writeTransaction(locked, { relaxedDurability: true, lock: 'rows' })));
    }
    return written;
  }

  private async replaceInstalledChunk(chunk: ReadonlyArray<InstalledSetWrite>): Promise<string[]> {
    const rows = await this.db.all(
      `UPDATE devices SET installed_digest = s.digest FROM (${textRowSet(this.db.dialect, CAS_DIGEST_COLUMNS)}) AS s
       WHERE devices.id = s.id AND devices.installed_digest IS NOT DISTINCT FROM s.expected RETURNING devices.id`,
      [
        ...rowSetParams(
          this.db.dialect,
          CAS_DIGEST_COLUMNS,
          chunk.map((e) => [e.deviceId, e.expectedDigest, installedDigest(e.installed)]),
        ),
      ],
    );
    const ids = new Set(rows.map((r) => str(r.id)));
    if (ids.size === 0) return [];
    const taken = chunk.filter((e) => ids.has(e.deviceId));
    await this.rewriteInstalledRows(taken);
    return taken.map((e) => e.deviceId);
  }

  /** The `installed` rows of each device replaced by its set (the digest is the caller's). */
  private async rewriteInstalledRows(sets: ReadonlyArray<Pick<InstalledSetWrite, 'deviceId' | 'installed' | 'at'>>): Promise<void> {
    await this.db.run(
      `DELETE FROM installed WHERE device_id IN (${sets.map(() => '?').join(', ')})`,
      sets.map((e) => e.deviceId),
    );
    const items = sets.flatMap((e) => e.installed.map((item) => [e.deviceId, item.name, item.kind, item.version, item.sha256, item.state, e.at]));
    for (let k = 0; k < items.length; k += REPORT_SLICE) {
      const slice = items.slice(k, k + REPORT_SLICE);
      await this.db.run(`INSERT INTO installed (device_id, name, kind, version, sha256, state, updated_at) VALUES ${valueRows(slice.length, 7)}`, slice.flat());
    }
  }

  replaceInstalled(deviceId: string, installed: Omit<InstalledRecord, 'updatedAt'>[], now: string): Promise<void> {
    return this.withWriteLock(async () => {
      await this.db.run('UPDATE devices SET installed_digest = ? WHERE id = ?', [installedDigest(installed), deviceId]);
      await this.rewriteInstalledRows([{ deviceId, installed, at: now }]);
    });
  }

  async decommissionDevice(deviceId: string, now: string): Promise<void> {
    await this.db.run('UPDATE devices SET decommissioned_at = COALESCE(decommissioned_at, ?) WHERE id = ?', [now, deviceId]);
  }

  async markOffboardNotified(deviceId: string, now: string): Promise<boolean> {
    const { changes } = await this.db.run(
      'UPDATE devices SET offboard_notified_at = ?, last_seen_at = ? WHERE id = ? AND decommissioned_at IS NOT NULL AND offboard_notified_at IS NULL',
      [now, now, deviceId],
    );
    return changes === 1;
  }

  async listInstalled(deviceId: string): Promise<InstalledRecord[]> {
    return (await this.db.all('SELECT * FROM installed WHERE device_id = ? ORDER BY name', [deviceId])).map(installedFromRow);
  }
}
