// Status reports for SqlStore: each advances the device's report sequence, the assignment's
// state and, when HEALTHY, the installed set, all in one write.
import type { Db } from './db.js';
import { installedDigest } from './installed-digest.js';
import { lockForReports } from './row-locks.js';
import { installedFromRow, num, REPORT_SLICE, rowSetParams, str, textRowSet, valueRows, type Row } from './sql-rows.js';
import type { InstalledRecord, NewStatusReport, StatusReportRecord } from './store.js';

function reportFromRow(r: Row): StatusReportRecord {
  return {
    id: num(r.id),
    deviceId: str(r.device_id),
    assignmentId: str(r.assignment_id),
    sequence: num(r.sequence),
    state: str(r.state) as StatusReportRecord['state'],
    reason: str(r.reason),
    bytesDone: num(r.bytes_done),
    bytesTotal: num(r.bytes_total),
    deviceTime: str(r.device_time),
    receivedAt: str(r.received_at),
  };
}

const REPORT_SEQ_COLUMNS = ['device_id', 'seq', 'at'] as const;
const REPORT_STATE_COLUMNS = ['id', 'device_id', 'state', 'reason', 'at'] as const;
const DIGEST_COLUMNS = ['id', 'digest'] as const;

export class SqlStatusReports {
  constructor(
    private readonly db: Db,
    private readonly withWriteLock: <T>(fn: () => Promise<T>) => Promise<T>,
    /** Joins the caller's transaction without a savepoint (SqlStore.joiningWrite). */
    private readonly joiningWrite: <T>(fn: () => Promise<T>) => Promise<T>,
  ) {}

  async listStatusReports(assignmentId: string): Promise<StatusReportRecord[]> {
    return (await this.db.all('SELECT * FROM status_reports WHERE assignment_id = ? ORDER BY sequence', [assignmentId])).map(reportFromRow);
  }

  async recordStatusReport(r: NewStatusReport): Promise<boolean> {
    // Its own transaction, or a savepoint in the caller's: all or nothing whatever the caller does.
    return (await this.withWriteLock(() => this.recordStatusReports([r])))[0]!;
  }

  recordStatusReports(reports: readonly NewStatusReport[]): Promise<boolean[]> {
    // Committed before the caller acknowledges the reports (the device service commits reports
    // that arrive together in one transaction, store/write-batcher.ts, still before answering).
    // A few statements for the whole set: during a wave of thousands of devices the reports'
    // round trips under the global write lock were what made them queue (docs/benchmarks.md).
    return this.joiningWrite(async () => {
      // PostgreSQL, in row-locks.ts order: the reports' rollouts (shared: a step, halt or abort
      // of one waits for the reports in flight, and they for it), then the devices in id order
      // (the sequence check and advance below, and the installed set, are per device).
      await lockForReports(this.db, reports);
      const accepted = reports.map(() => false);
      // A device at most once per round, its reports in the order given: within one statement
      // two rows of one device could not see each other's sequence.
      const rounds: number[][] = [];
      const seen = new Map<string, number>();
      reports.forEach((r, i) => {
        const round = seen.get(r.deviceId) ?? 0;
        seen.set(r.deviceId, round + 1);
        (rounds[round] ??= []).push(i);
      });
      for (const round of rounds) {
        // Slices keep a statement's parameters far below SQLite's limit (32,766).
        for (let from = 0; from < round.length; from += REPORT_SLICE) {
          const slice = round.slice(from, from + REPORT_SLICE);
          const taken = await this.recordReportRound(slice.map((i) => reports[i]!));
          slice.forEach((i, k) => (accepted[i] = taken[k]!));
        }
      }
      return accepted;
    });
  }

  /** Reports of distinct devices: sequence check and advance, report rows, assignment states, installed sets. */
  private async recordReportRound(round: readonly NewStatusReport[]): Promise<boolean[]> {
    // The check and the advance in one statement: a report not newer than the last one stored
    // (a retry, a replay) changes no row, and nothing else is written for it.
    const advanced = await this.db.all(
      `UPDATE devices SET last_report_seq = CAST(s.seq AS BIGINT), last_seen_at = s.at FROM (${textRowSet(this.db.dialect, REPORT_SEQ_COLUMNS)}) AS s
       WHERE devices.id = s.device_id AND devices.last_report_seq < CAST(s.seq AS BIGINT) RETURNING id`,
      [
        ...rowSetParams(
          this.db.dialect,
          REPORT_SEQ_COLUMNS,
          round.map((r) => [r.deviceId, String(r.sequence), r.receivedAt]),
        ),
      ],
    );
    const advancedIds = new Set(advanced.map((row) => str(row.id)));
    const taken = round.map((r) => advancedIds.has(r.deviceId));
    const stored = round.filter((_, k) => taken[k]);
    if (stored.length === 0) return taken;
    await this.db.run(
      `INSERT INTO status_reports (device_id, assignment_id, sequence, state, reason, bytes_done, bytes_total, device_time, received_at)
       VALUES ${valueRows(stored.length, 9)}`,
      stored.flatMap((r) => [r.deviceId, r.assignmentId, r.sequence, r.state, r.reason, r.bytesDone, r.bytesTotal, r.deviceTime, r.receivedAt]),
    );
    await this.db.run(
      `UPDATE assignments SET state = s.state, reason = s.reason, updated_at = s.at FROM (${textRowSet(this.db.dialect, REPORT_STATE_COLUMNS)}) AS s
       WHERE assignments.id = s.id AND assignments.device_id = s.device_id`,
      [
        ...rowSetParams(
          this.db.dialect,
          REPORT_STATE_COLUMNS,
          stored.map((r) => [r.assignmentId, r.deviceId, r.state, r.reason, r.receivedAt]),
        ),
      ],
    );
    const installing = stored.filter((r) => r.installed);
    if (installing.length > 0) {
      await this.db.run(
        `INSERT INTO installed (device_id, name, kind, version, sha256, state, updated_at) VALUES ${valueRows(installing.length, 7)}
         ON CONFLICT (device_id, name) DO UPDATE SET kind = excluded.kind, version = excluded.version,
           sha256 = excluded.sha256, state = excluded.state, updated_at = excluded.updated_at`,
        installing.flatMap((r) => [r.deviceId, r.installed!.name, r.installed!.kind, r.installed!.version, r.installed!.sha256, r.installed!.state, r.receivedAt]),
      );
      // The digest of each set as it now stands: the device's next heartbeat, listing the new
      // version, matches it and writes nothing (during a wave, one write less per device).
      const rows = await this.db.all(
        `SELECT * FROM installed WHERE device_id IN (${installing.map(() => '?').join(', ')})`,
        installing.map((r) => r.deviceId),
      );
      const sets = new Map<string, InstalledRecord[]>();
      for (const row of rows) {
        const set = sets.get(str(row.device_id)) ?? [];
        set.push(installedFromRow(row));
        sets.set(str(row.device_id), set);
      }
      await this.db.run(`UPDATE devices SET installed_digest = s.digest FROM (${textRowSet(this.db.dialect, DIGEST_COLUMNS)}) AS s WHERE devices.id = s.id`, [
        ...rowSetParams(
          this.db.dialect,
          DIGEST_COLUMNS,
          installing.map((r) => [r.deviceId, installedDigest(sets.get(r.deviceId) ?? [])]),
        ),
      ]);
    }
    return taken;
  }
}
