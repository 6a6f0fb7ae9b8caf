// Static device groups for SqlStore. Multi-statement writes run under the write lock.
import type { Db } from './db.js';
import { forEachChunk, rowSetParams, str, textRowSet, type Row } from './sql-rows.js';
import type { GroupRecord, GroupStore } from './store.js';

const MEMBER_COLUMNS = ['device_name', 'position'] as const;

export class SqlGroups implements GroupStore {
  constructor(
    private readonly db: Db,
    private readonly withWriteLock: <T>(fn: () => Promise<T>) => Promise<T>,
  ) {}

  insert(g: GroupRecord): Promise<boolean> {
    return this.withWriteLock(async () => {
      const inserted = await this.db.run('INSERT INTO device_groups (fleet, name, created_at, created_by, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING', [
        g.fleet,
        g.name,
        g.createdAt,
        g.createdBy,
        g.updatedAt,
      ]);
      if (inserted.changes !== 1) return false;
      await this.insertMembers(g.fleet, g.name, g.devices);
      return true;
    });
  }

  async get(fleet: string, name: string): Promise<GroupRecord | undefined> {
    const r = await this.db.get('SELECT * FROM device_groups WHERE fleet = ? AND name = ?', [fleet, name]);
    return r ? this.fromRow(r) : undefined;
  }

  async list(filter: { fleet?: string } = {}): Promise<GroupRecord[]> {
    const rows = await this.db.all('SELECT * FROM device_groups WHERE (CAST(@fleet AS TEXT) IS NULL OR fleet = @fleet) ORDER BY fleet, name', {
      fleet: filter.fleet ?? null,
    });
    const groups: GroupRecord[] = [];
    for (const r of rows) groups.push(await this.fromRow(r));
    return groups;
  }

  setDevices(fleet: string, name: string, devices: string[], now: string): Promise<boolean> {
    return this.withWriteLock(async () => {
      const updated = await this.db.run('UPDATE device_groups SET updated_at = ? WHERE fleet = ? AND name = ?', [now, fleet, name]);
      if (updated.changes !== 1) return false;
      await this.db.run('DELETE FROM device_group_members WHERE fleet = ? AND group_name = ?', [fleet, name]);
      await this.insertMembers(fleet, name, devices);
      return true;
    });
  }

  private async insertMembers(fleet: string, group: string, devices: string[]): Promise<void> {
    // A row set per statement, not a statement per name: this runs inside the write lock.
    await forEachChunk(
      devices.map((d, i) => [d, String(i)]),
      async (chunk) => {
        await this.db.run(
          `INSERT INTO device_group_members (fleet, group_name, device_name, position)
           SELECT ?, ?, m.device_name, CAST(m.position AS INTEGER) FROM (${textRowSet(this.db.dialect, MEMBER_COLUMNS)}) AS m`,
          [fleet, group, ...rowSetParams(this.db.dialect, MEMBER_COLUMNS, chunk)],
        );
      },
    );
  }

  private async fromRow(r: Row): Promise<GroupRecord> {
    const members = await this.db.all('SELECT device_name FROM device_group_members WHERE fleet = ? AND group_name = ? ORDER BY position', [r.fleet, r.name]);
    return {
      fleet: str(r.fleet),
      name: str(r.name),
      devices: members.map((m) => str(m.device_name)),
      createdAt: str(r.created_at),
      createdBy: str(r.created_by),
      updatedAt: str(r.updated_at),
    };
  }
}
