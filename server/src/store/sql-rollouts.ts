// Rollouts, their stored wave split and wave starts, for SqlStore. The rollout engine
// (rollouts/) groups these statements under Store.withWriteLock: one decision, one transaction.
import * as crypto from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { TERMINAL_STATES } from '@meshanics/core/contract';
import type { Db } from './db.js';
import { failedRolloutAssignment, MIGRATION_10_TERMINAL_STATES, unfinishedRolloutAssignment } from './migration-10.js';
import { lockDevices } from './row-locks.js';
import { forEachChunk, json, num, probeFromColumn, str, rowSetParams, strOrNull, textRowSet, valueRows, type Row } from './sql-rows.js';
import type {
  AssignmentState,
  ProbeRecord,
  RolloutAssignmentState,
  RolloutDevicePage,
  RolloutDeviceView,
  RolloutGlance,
  RolloutProgressCounts,
  RolloutRecord,
  RolloutStatusValue,
  RolloutStore,
  RolloutUpdate,
  RolloutWaveStart,
  RolloutWaveStateCount,
  RevertEntry,
} from './store.js';

function rolloutFromRow(r: Row): RolloutRecord {
  return {
    id: str(r.id),
    fleet: str(r.fleet),
    artifactId: str(r.artifact_id),
    artifactName: str(r.artifact_name),
    group: str(r.group_name),
    probe: probeFromColumn(r.probe),
    strategy: json(r.strategy, { waves: [], max_failure_rate: 0 }),
    status: str(r.status) as RolloutStatusValue,
    currentWave: num(r.current_wave),
    acknowledgedFailures: num(r.acknowledged_failures),
    halt: json(r.halt, null),
    abortPolicy: strOrNull(r.abort_policy) as RolloutRecord['abortPolicy'],
    createdBy: str(r.created_by),
    createdAt: str(r.created_at),
    updatedAt: str(r.updated_at),
    finishedAt: strOrNull(r.finished_at),
  };
}

function assignmentState(r: Row, prefix: string): RolloutAssignmentState | null {
  if (r[`${prefix}id`] === null || r[`${prefix}id`] === undefined) return null;
  return {
    id: str(r[`${prefix}id`]),
    state: str(r[`${prefix}state`]) as AssignmentState,
    reason: str(r[`${prefix}reason`]),
    active: num(r[`${prefix}active`]) === 1,
    createdAt: str(r[`${prefix}created_at`]),
    updatedAt: str(r[`${prefix}updated_at`]),
  };
}

/** Devices per statement when a wave starts (11 parameters each in the INSERT). */
const WAVE_CHUNK = 200;
const PLAN_COLUMNS = ['device_id', 'wave', 'position'] as const;
/** The contract's terminal states as an SQL list, for `state IN ...` (constants, not parameters: one plan). */
const TERMINAL_IN = `(${[...TERMINAL_STATES].map((s) => `'${s}'`).join(', ')})`;
const ID_COLUMNS = ['id'] as const;
/** `ids` as a row set of one column `id` (textRowSet: one statement text whatever their number). */
const idRowSet = (db: Db): string => `(${textRowSet(db.dialect, ID_COLUMNS)})`;
const idRowParams = (db: Db, ids: readonly string[]): unknown[] =>
  rowSetParams(
    db.dialect,
    ID_COLUMNS,
    ids.map((id) => [id]),
  );
/**
 * A device of the rollout (`rd`, its device `d`, its rollout assignment `a`) that still holds its
 * wave: live (not decommissioned, not superseded before it finished) and not finished. The
 * engine's isLive and outcome rule (rollouts/engine.ts), for progress() and the summary alike.
 */
const LIVE_UNFINISHED = `d.decommissioned_at IS NULL AND (a.id IS NULL OR a.state NOT IN ${TERMINAL_IN}) AND NOT (a.id IS NOT NULL AND a.active = 0)`;
/** The state a rollout detail shows for a device: its revert's, else its rollout assignment's, else PENDING (rollouts/detail.ts). */
const SHOWN_STATE = "COALESCE(ra.state, a.state, 'PENDING')";

/** Devices counted per statement by progress() on SQLite (see there). */
const PROGRESS_SLICE = 1000;
const ASSIGNED_COLUMNS = ['device_id', 'assignment_id', 'previous_version', 'previous_artifact_id'] as const;
const REVERT_COLUMNS = ['device_id', 'revert_assignment_id', 'revert_note'] as const;
const REVERT_ASSIGNMENT_COLUMNS = ['id', 'device_id', 'artifact_id', 'artifact_name', 'probe'] as const;

/**
 * RolloutStore.glance's statement. Each count starts from a partial index of migration 10 (its
 * predicate repeated, so both engines use it): the failures alone, and the unfinished ones
 * only up to the first live entry, whatever the rollout's size. The rollout assignment of a device is the one rollout_devices names (a
 * revert's assignment carries the rollout's id too, and is left out): exactly progress()'s
 * rows. The unfinished test reads the device's wave and decommissioning as correlated
 * subqueries, not joins: PostgreSQL then walks the index and stops at the first live entry (a
 * join was planned as a hash of every unfinished assignment: tens of ms at the start of a
 * wave of thousands). Exported for the plan test.
 */
export const GLANCE_SQL = `SELECT r.*,
   COALESCE(r.targeted, (SELECT COUNT(*) FROM rollout_devices t WHERE t.rollout_id = @id)) AS glance_targeted,
   (SELECT COUNT(*) FROM assignments a
      JOIN rollout_devices rd ON rd.rollout_id = @id AND rd.device_id = a.device_id AND rd.assignment_id = a.id
      WHERE a.rollout_id = @id AND ${failedRolloutAssignment('a.')}) AS glance_failures,
   CASE WHEN EXISTS (SELECT 1 FROM assignments a
      WHERE a.rollout_id = @id AND ${unfinishedRolloutAssignment('a.')}
        AND (SELECT rd.wave FROM rollout_devices rd WHERE rd.rollout_id = @id AND rd.device_id = a.device_id AND rd.assignment_id = a.id) <= r.current_wave
        AND (SELECT d.decommissioned_at FROM devices d WHERE d.id = a.device_id) IS NULL)
   THEN 1 ELSE 0 END AS glance_unfinished
 FROM rollouts r WHERE r.id = @id`;

/**
 * The glance's index spells out the terminal states (migration 10). Should the contract's ever
 * differ, the glance would call a finished device unfinished and settle every step: it is then
 * off (every step locks and counts) until a migration brings the index in line.
 */
const GLANCE_MATCHES_CONTRACT = MIGRATION_10_TERMINAL_STATES.length === TERMINAL_STATES.size && MIGRATION_10_TERMINAL_STATES.every((s) => TERMINAL_STATES.has(s as never));

const UPDATABLE: Record<keyof RolloutUpdate, { column: string; encode: (v: unknown) => unknown }> = {
  status: { column: 'status', encode: (v) => v },
  currentWave: { column: 'current_wave', encode: (v) => v },
  acknowledgedFailures: { column: 'acknowledged_failures', encode: (v) => v },
  halt: { column: 'halt', encode: (v) => (v === null ? null : JSON.stringify(v)) },
  abortPolicy: { column: 'abort_policy', encode: (v) => v },
  finishedAt: { column: 'finished_at', encode: (v) => v },
};

export class SqlRollouts implements RolloutStore {
  constructor(
    private readonly db: Db,
    private readonly withWriteLock: <T>(fn: () => Promise<T>) => Promise<T>,
  ) {}

  insert(r: RolloutRecord, devices: Array<{ deviceId: string; wave: number; position: number }>): Promise<void> {
    return this.withWriteLock(async () => {
      await this.db.run(
        `INSERT INTO rollouts (id, fleet, artifact_id, artifact_name, group_name, probe, strategy, status, current_wave,
           acknowledged_failures, halt, abort_policy, created_by, created_at, updated_at, finished_at, targeted)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [
          r.id,
          r.fleet,
          r.artifactId,
          r.artifactName,
          r.group,
          JSON.stringify(r.probe),
          JSON.stringify(r.strategy),
          r.status,
          r.currentWave,
          r.acknowledgedFailures,
          r.halt === null ? null : JSON.stringify(r.halt),
          r.abortPolicy,
          r.createdBy,
          r.createdAt,
          r.updatedAt,
          r.finishedAt,
          devices.length,
        ],
      );
      // A row set per statement: the plan of a 100,000-device group is written inside the lock.
      await forEachChunk(devices, async (chunk) => {
        await this.db.run(
          `INSERT INTO rollout_devices (rollout_id, device_id, artifact_name, active, wave, position)
           SELECT ?, p.device_id, ?, 1, CAST(p.wave AS INTEGER), CAST(p.position AS INTEGER) FROM (${textRowSet(this.db.dialect, PLAN_COLUMNS)}) AS p`,
          [
            r.id,
            r.artifactName,
            ...rowSetParams(
              this.db.dialect,
              PLAN_COLUMNS,
              chunk.map((d) => [d.deviceId, String(d.wave), String(d.position)]),
            ),
          ],
        );
      });
    });
  }

  async get(id: string): Promise<RolloutRecord | undefined> {
    const r = await this.db.get('SELECT * FROM rollouts WHERE id = ?', [id]);
    return r ? rolloutFromRow(r) : undefined;
  }

  async lockForDecision(id: string): Promise<RolloutRecord | undefined> {
    // PostgreSQL: the rollout's row lock, held to the end of the caller's transaction, so a
    // decision about this rollout is never taken twice at once, and taken only once every
    // status report of its devices in flight has committed (they share-lock the row,
    // row-locks.ts): the counts read after this are exact. Rollout steps take no global lock.
    // SQLite: BEGIN IMMEDIATE is enough.
    const sql = this.db.dialect === 'postgres' ? 'SELECT * FROM rollouts WHERE id = ? FOR UPDATE' : 'SELECT * FROM rollouts WHERE id = ?';
    const r = await this.db.get(sql, [id]);
    return r ? rolloutFromRow(r) : undefined;
  }

  async lockDevices(rolloutId: string): Promise<void> {
    await lockDevices(
      this.db,
      (await this.db.all('SELECT device_id FROM rollout_devices WHERE rollout_id = ?', [rolloutId])).map((r) => str(r.device_id)),
    );
  }

  async list(filter: { fleet?: string; status?: RolloutStatusValue; limit: number; offset: number }): Promise<{ items: RolloutRecord[]; total: number }> {
    const where = '(CAST(@fleet AS TEXT) IS NULL OR fleet = @fleet) AND (CAST(@status AS TEXT) IS NULL OR status = @status)';
    const params = { fleet: filter.fleet ?? null, status: filter.status ?? null };
    const total = num((await this.db.get(`SELECT COUNT(*) AS n FROM rollouts WHERE ${where}`, params))!.n);
    const rows = await this.db.all(`SELECT * FROM rollouts WHERE ${where} ORDER BY created_at DESC, rowid DESC LIMIT @limit OFFSET @offset`, {
      ...params,
      limit: filter.limit,
      offset: filter.offset,
    });
    return { items: rows.map(rolloutFromRow), total };
  }

  async listIds(statuses: readonly RolloutStatusValue[]): Promise<string[]> {
    if (statuses.length === 0) return [];
    const rows = await this.db.all(`SELECT id FROM rollouts WHERE status IN (${statuses.map(() => '?').join(', ')}) ORDER BY created_at, rowid`, [...statuses]);
    return rows.map((r) => str(r.id));
  }

  async countByStatus(): Promise<Record<string, number>> {
    const rows = await this.db.all('SELECT status, COUNT(*) AS n FROM rollouts GROUP BY status');
    return Object.fromEntries(rows.map((r) => [str(r.status), num(r.n)]));
  }

  async update(id: string, patch: RolloutUpdate, now: string): Promise<void> {
    const keys = (Object.keys(patch) as Array<keyof RolloutUpdate>).filter((k) => patch[k] !== undefined);
    const sets = keys.map((k) => `${UPDATABLE[k].column} = ?`);
    await this.db.run(`UPDATE rollouts SET ${[...sets, 'updated_at = ?'].join(', ')} WHERE id = ?`, [...keys.map((k) => UPDATABLE[k].encode(patch[k])), now, id]);
  }

  async progress(rolloutId: string, currentWave: number): Promise<RolloutProgressCounts> {
    // Mirrors outcomeOf/isLive in rollouts/engine.ts: an outcome is the state of the device's
    // rollout assignment; a device stops counting for wave completion when decommissioned or
    // when its assignment was superseded before it finished.
    const counts = (range: string) => `SELECT COUNT(*) AS targeted,
         COALESCE(SUM(CASE WHEN a.state = 'HEALTHY' THEN 1 ELSE 0 END), 0) AS healthy,
         COALESCE(SUM(CASE WHEN a.state = 'FAILED' THEN 1 ELSE 0 END), 0) AS failed,
         COALESCE(SUM(CASE WHEN a.state = 'ROLLED_BACK' THEN 1 ELSE 0 END), 0) AS rolled_back,
         COALESCE(SUM(CASE WHEN rd.wave <= @wave AND ${LIVE_UNFINISHED} THEN 1 ELSE 0 END), 0) AS started_unfinished,
         MAX(rd.device_id) AS last_device
       FROM ${range} rd
       JOIN devices d ON d.id = rd.device_id
       LEFT JOIN assignments a ON a.id = rd.assignment_id`;
    const total: RolloutProgressCounts = { targeted: 0, healthy: 0, failed: 0, rolledBack: 0, startedUnfinished: 0 };
    const add = (r: Row): void => {
      total.targeted += num(r.targeted);
      total.healthy += num(r.healthy);
      total.failed += num(r.failed);
      total.rolledBack += num(r.rolled_back);
      total.startedUnfinished += num(r.started_unfinished);
    };
    if (this.db.dialect !== 'sqlite' || !this.db.inTransaction()) {
      // One statement: on PostgreSQL it runs in the database's own process; outside a
      // transaction, slices could see different commits.
      add((await this.db.get(`${counts('rollout_devices')} WHERE rd.rollout_id = @rollout`, { wave: currentWave, rollout: rolloutId }))!);
      return total;
    }
    // SQLite runs on this event loop: 10,000 devices are tens of ms of CPU in one piece (more
    // on a loaded machine), which every heartbeat waiting behind it paid as latency. Counted
    // in slices of PROGRESS_SLICE devices by primary key, yielding between them. Consistent:
    // the caller holds the write transaction (the engine always does), so no write lands
    // between two slices.
    for (let after = ''; ;) {
      const r = (await this.db.get(`${counts(`(SELECT * FROM rollout_devices WHERE rollout_id = @rollout AND device_id > @after ORDER BY device_id LIMIT ${PROGRESS_SLICE})`)}`, {
        wave: currentWave,
        rollout: rolloutId,
        after,
      }))!;
      add(r);
      if (num(r.targeted) < PROGRESS_SLICE) return total;
      after = str(r.last_device);
      await yieldToEventLoop();
    }
  }

  async glance(rolloutId: string): Promise<RolloutGlance | undefined> {
    if (!GLANCE_MATCHES_CONTRACT) return undefined;
    const r = await this.db.get(GLANCE_SQL, { id: rolloutId });
    if (!r) return undefined;
    return { rollout: rolloutFromRow(r), targeted: num(r.glance_targeted), failures: num(r.glance_failures), someStartedUnfinished: num(r.glance_unfinished) === 1 };
  }

  async waveStateCounts(rolloutId: string): Promise<RolloutWaveStateCount[]> {
    // Mirrors deviceDetail and the wave status of rollouts/detail.ts: the state shown is the
    // revert assignment's, else the rollout assignment's, else PENDING; a wave is complete
    // when no live device's rollout assignment is missing or unfinished (live as progress()
    // counts it: not decommissioned, not superseded before it finished).
    const counts = (source: string) =>
      `SELECT rd.wave, ${SHOWN_STATE} AS state, COUNT(*) AS devices,
         COALESCE(SUM(CASE WHEN ${LIVE_UNFINISHED} THEN 1 ELSE 0 END), 0) AS unfinished,
         MAX(rd.position) AS last_position
       FROM ${source} rd
       JOIN devices d ON d.id = rd.device_id
       LEFT JOIN assignments a ON a.id = rd.assignment_id
       LEFT JOIN assignments ra ON ra.id = rd.revert_assignment_id
       WHERE rd.rollout_id = @rollout GROUP BY rd.wave, ${SHOWN_STATE}`;
    const parse = (r: Row): RolloutWaveStateCount => ({ wave: num(r.wave), state: str(r.state) as AssignmentState, devices: num(r.devices), unfinished: num(r.unfinished) });
    if (this.db.dialect !== 'sqlite') return (await this.db.all(counts('rollout_devices'), { rollout: rolloutId })).map(parse);
    // SQLite reads on this event loop: 36,000 devices in one statement were 136 ms that every
    // heartbeat behind it waited (bench/rollout-detail.mjs), and a watched rollout's summary is
    // read every second or so. Counted in slices of PROGRESS_SLICE devices in plan order
    // (migration 11's index), yielding between them. A display, not a decision: each device is
    // counted once, in the state its slice saw (the engine's own count, progress(), holds the
    // write transaction).
    const merged = new Map<string, RolloutWaveStateCount>();
    for (let after = -1; ;) {
      const rows = await this.db.all(counts(`(SELECT * FROM rollout_devices WHERE rollout_id = @rollout AND position > @after ORDER BY position LIMIT ${PROGRESS_SLICE})`), {
        rollout: rolloutId,
        after,
      });
      let seen = 0;
      for (const r of rows) {
        const c = parse(r);
        seen += c.devices;
        after = Math.max(after, num(r.last_position));
        const key = `${c.wave}:${c.state}`;
        const held = merged.get(key);
        if (held) {
          held.devices += c.devices;
          held.unfinished += c.unfinished;
        } else merged.set(key, c);
      }
      if (seen < PROGRESS_SLICE) return [...merged.values()];
      await yieldToEventLoop();
    }
  }

  async listDevices(rolloutId: string, page?: RolloutDevicePage): Promise<RolloutDeviceView[]> {
    const cols = ['id', 'state', 'reason', 'active', 'created_at', 'updated_at'];
    const where = ['rd.rollout_id = ?'];
    const params: unknown[] = [rolloutId];
    // Keyset on migration 11's (rollout_id, position) index: a page costs its own rows, not
    // the rows before it, whatever the rollout's size.
    const filter = (term: string, value: unknown): void => {
      where.push(term);
      params.push(value);
    };
    if (page?.afterPosition !== undefined) filter('rd.position > ?', page.afterPosition);
    if (page?.wave !== undefined) filter('rd.wave = ?', page.wave);
    if (page?.state !== undefined) filter(`${SHOWN_STATE} = ?`, page.state);
    const rows = await this.db.all(
      `SELECT rd.*, d.name AS device_name, d.decommissioned_at AS device_decommissioned_at,
         ${cols.map((c) => `a.${c} AS a_${c}`).join(', ')}, ${cols.map((c) => `ra.${c} AS ra_${c}`).join(', ')}
       FROM rollout_devices rd
       JOIN devices d ON d.id = rd.device_id
       LEFT JOIN assignments a ON a.id = rd.assignment_id
       LEFT JOIN assignments ra ON ra.id = rd.revert_assignment_id
       WHERE ${where.join(' AND ')} ORDER BY rd.position${page ? ' LIMIT ?' : ''}`,
      page ? [...params, page.limit] : params,
    );
    return rows.map((r) => ({
      rolloutId: str(r.rollout_id),
      deviceId: str(r.device_id),
      wave: num(r.wave),
      position: num(r.position),
      assignmentId: strOrNull(r.assignment_id),
      assignedAt: strOrNull(r.assigned_at),
      previousVersion: strOrNull(r.previous_version),
      previousArtifactId: strOrNull(r.previous_artifact_id),
      revertAssignmentId: strOrNull(r.revert_assignment_id),
      revertNote: strOrNull(r.revert_note),
      revertedAt: strOrNull(r.reverted_at),
      deviceName: str(r.device_name),
      decommissioned: r.device_decommissioned_at !== null,
      assignment: assignmentState(r, 'a_'),
      revert: assignmentState(r, 'ra_'),
    }));
  }

  async busyDevices(deviceIds: readonly string[], artifactName: string): Promise<Array<{ deviceId: string; rolloutId: string }>> {
    const rolloutOf = new Map<string, string>();
    await forEachChunk(deviceIds, async (chunk) => {
      const rows = await this.db.all(
        `SELECT rd.device_id, rd.rollout_id FROM ${idRowSet(this.db)} AS q
         JOIN rollout_devices rd ON rd.device_id = q.id AND rd.artifact_name = ? AND rd.active = 1`,
        [...idRowParams(this.db, chunk), artifactName],
      );
      for (const r of rows) rolloutOf.set(str(r.device_id), str(r.rollout_id));
    });
    // In the order asked.
    return deviceIds.filter((id) => rolloutOf.has(id)).map((deviceId) => ({ deviceId, rolloutId: rolloutOf.get(deviceId)! }));
  }

  async startWaveAssignments(
    rollout: Pick<RolloutRecord, 'id' | 'artifactId' | 'artifactName' | 'probe'>,
    wave: number,
    now: string,
  ): Promise<{ started: string[]; skipped: string[] }> {
    const rows = await this.db.all(
      `SELECT rd.device_id, d.name AS device_name, d.decommissioned_at, i.version AS installed_version, i.sha256 AS installed_sha256
       FROM rollout_devices rd
       JOIN devices d ON d.id = rd.device_id
       LEFT JOIN installed i ON i.device_id = rd.device_id AND i.name = ?
       WHERE rd.rollout_id = ? AND rd.wave = ? AND rd.assignment_id IS NULL
       ORDER BY rd.position`,
      [rollout.artifactName, rollout.id, wave],
    );
    const catalog = new Map(
      (await this.db.all('SELECT id, version, sha256 FROM artifacts WHERE name = ?', [rollout.artifactName])).map((r) => [
        str(r.version),
        { id: str(r.id), sha256: str(r.sha256) },
      ]),
    );
    const skipped = rows.filter((r) => r.decommissioned_at !== null).map((r) => str(r.device_name));
    const live = rows.filter((r) => r.decommissioned_at === null);
    // PostgreSQL: the wave's devices, all at once in id order (row-locks.ts), before their
    // assignments are superseded: a manual assignment of one of them waits or is seen.
    await lockDevices(
      this.db,
      live.map((r) => str(r.device_id)),
    );
    const probe = JSON.stringify(rollout.probe);
    // forEachChunk lets the event loop answer heartbeats (they read on their own connection)
    // between chunks: SQLite runs every statement synchronously.
    await forEachChunk(
      live,
      async (chunk) => {
        const entries = chunk.map((r) => {
          const installedVersion = strOrNull(r.installed_version);
          const previous = installedVersion === null ? undefined : catalog.get(installedVersion);
          return {
            deviceId: str(r.device_id),
            assignmentId: crypto.randomUUID(),
            previousVersion: installedVersion,
            // Only a catalog version with the same bytes can be sent back.
            previousArtifactId: previous && previous.sha256 === strOrNull(r.installed_sha256) ? previous.id : null,
          };
        });
        const marks = (n: number) => Array.from({ length: n }, () => '?').join(', ');
        // The device's active assignment for the artifact name is superseded (as insertAssignment does).
        await this.db.run(`UPDATE assignments SET active = 0, updated_at = ? WHERE artifact_name = ? AND active = 1 AND device_id IN (${marks(entries.length)})`, [
          now,
          rollout.artifactName,
          ...entries.map((e) => e.deviceId),
        ]);
        await this.db.run(
          `INSERT INTO assignments (id, device_id, artifact_id, artifact_name, rollout_id, probe, state, reason, active, created_at, updated_at)
         VALUES ${valueRows(entries.length, 11)}`,
          entries.flatMap((e) => [e.assignmentId, e.deviceId, rollout.artifactId, rollout.artifactName, rollout.id, probe, 'PENDING', '', 1, now, now]),
        );
        await this.db.run(
          `UPDATE rollout_devices SET assignment_id = s.assignment_id, assigned_at = ?, previous_version = s.previous_version, previous_artifact_id = s.previous_artifact_id
         FROM (${textRowSet(this.db.dialect, ASSIGNED_COLUMNS)}) AS s
         WHERE rollout_devices.rollout_id = ? AND rollout_devices.device_id = s.device_id`,
          [
            now,
            ...rowSetParams(
              this.db.dialect,
              ASSIGNED_COLUMNS,
              entries.map((e) => [e.deviceId, e.assignmentId, e.previousVersion, e.previousArtifactId]),
            ),
            rollout.id,
          ],
        );
      },
      { size: WAVE_CHUNK },
    );
    return { started: live.map((r) => str(r.device_name)), skipped };
  }

  async releaseDevices(rolloutId: string): Promise<void> {
    await this.db.run('UPDATE rollout_devices SET active = 0 WHERE rollout_id = ?', [rolloutId]);
  }

  deactivatePendingAssignments(rolloutId: string, now: string): Promise<string[]> {
    return this.withWriteLock(async () => {
      const ids = (
        await this.db.all(
          `SELECT a.id FROM assignments a JOIN rollout_devices rd ON rd.assignment_id = a.id
           WHERE rd.rollout_id = ? AND a.active = 1 AND a.state = 'PENDING' ORDER BY rd.position`,
          [rolloutId],
        )
      ).map((r) => str(r.id));
      await forEachChunk(ids, async (chunk) => {
        await this.db.run(`UPDATE assignments SET active = 0, updated_at = ? WHERE id IN (SELECT id FROM ${idRowSet(this.db)} AS q)`, [now, ...idRowParams(this.db, chunk)]);
      });
      return ids;
    });
  }

  async lastHealthyProbes(artifactId: string, deviceIds: readonly string[]): Promise<Map<string, ProbeRecord>> {
    const probes = new Map<string, ProbeRecord>();
    await forEachChunk(deviceIds, async (chunk) => {
      const rows = await this.db.all(
        `SELECT a.device_id, a.probe FROM ${idRowSet(this.db)} AS q
         JOIN assignments a ON a.device_id = q.id AND a.artifact_id = ? AND a.state = 'HEALTHY'
         ORDER BY a.device_id, a.updated_at DESC, a.rowid DESC`,
        [...idRowParams(this.db, chunk), artifactId],
      );
      // The first row of each device is its latest.
      for (const r of rows) {
        const id = str(r.device_id);
        if (!probes.has(id)) probes.set(id, probeFromColumn(r.probe));
      }
    });
    return probes;
  }

  recordReverts(rolloutId: string, entries: readonly RevertEntry[], now: string): Promise<void> {
    // A statement per chunk, not per device: an abort with revert of 36,000 devices was 63 s on
    // PostgreSQL one device at a time, with every device's row locked all along (the status
    // reports and liveness of the whole rollout waiting behind it). Statement texts do not vary
    // with the chunk (row sets, not lists of placeholders): the drivers keep every text they
    // prepare.
    return this.withWriteLock(async () => {
      // Held already when the caller is an abort (it locks every device of the rollout first);
      // taken here all at once, in id order, for any other caller (row-locks.ts).
      await lockDevices(
        this.db,
        entries.map((e) => e.deviceId),
      );
      await forEachChunk(
        entries,
        async (chunk) => {
          const sends = chunk.filter((e): e is RevertEntry & { revert: NonNullable<RevertEntry['revert']> } => e.revert !== null);
          for (const name of new Set(sends.map((e) => e.revert.artifactName))) {
            const ids = sends.filter((e) => e.revert.artifactName === name).map((e) => e.deviceId);
            // As insertAssignment does: the device's active assignment of the name is superseded.
            await this.db.run(
              `UPDATE assignments SET active = 0, updated_at = ?
               WHERE artifact_name = ? AND active = 1 AND device_id IN (SELECT id FROM ${idRowSet(this.db)} AS q)`,
              [now, name, ...idRowParams(this.db, ids)],
            );
          }
          if (sends.length > 0) {
            await this.db.run(
              `INSERT INTO assignments (id, device_id, artifact_id, artifact_name, rollout_id, probe, state, reason, active, created_at, updated_at)
               SELECT q.id, q.device_id, q.artifact_id, q.artifact_name, ?, q.probe, 'PENDING', '', 1, ?, ?
               FROM (${textRowSet(this.db.dialect, REVERT_ASSIGNMENT_COLUMNS)}) AS q`,
              [
                rolloutId,
                now,
                now,
                ...rowSetParams(
                  this.db.dialect,
                  REVERT_ASSIGNMENT_COLUMNS,
                  sends.map((e) => [e.revert.assignmentId, e.deviceId, e.revert.artifactId, e.revert.artifactName, JSON.stringify(e.revert.probe)]),
                ),
              ],
            );
          }
          await this.db.run(
            `UPDATE rollout_devices SET revert_assignment_id = s.revert_assignment_id, revert_note = s.revert_note, reverted_at = ?
             FROM (${textRowSet(this.db.dialect, REVERT_COLUMNS)}) AS s
             WHERE rollout_devices.rollout_id = ? AND rollout_devices.device_id = s.device_id`,
            [
              now,
              ...rowSetParams(
                this.db.dialect,
                REVERT_COLUMNS,
                chunk.map((e) => [e.deviceId, e.revert?.assignmentId ?? null, e.note]),
              ),
              rolloutId,
            ],
          );
        },
        { size: WAVE_CHUNK },
      );
    });
  }

  async recordWaveStart(rolloutId: string, start: RolloutWaveStart): Promise<void> {
    await this.db.run('INSERT INTO rollout_waves (rollout_id, wave, started_at, started_by) VALUES (?, ?, ?, ?)', [rolloutId, start.wave, start.startedAt, start.startedBy]);
  }

  async listWaveStarts(rolloutId: string): Promise<RolloutWaveStart[]> {
    return (await this.db.all('SELECT * FROM rollout_waves WHERE rollout_id = ? ORDER BY wave', [rolloutId])).map((r) => ({
      wave: num(r.wave),
      startedAt: str(r.started_at),
      startedBy: str(r.started_by),
    }));
  }
}
