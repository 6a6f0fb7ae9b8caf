// Static device groups for SqliteStore. Multi-statement writes run under the write lock.
import type Database from 'better-sqlite3';
import { str, type Row } from './sqlite-rows.js';
import type { GroupRecord, GroupStore } from './store.js';

export class SqliteGroups implements GroupStore {
  constructor(
    private readonly db: Database.Database,
    private readonly withWriteLock: <T>(fn: () => T) => T,
  ) {}

  insert(g: GroupRecord): boolean {
    return this.withWriteLock(() => {
      const inserted = this.db
        .prepare('INSERT INTO device_groups (fleet, name, created_at, created_by, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING')
        .run(g.fleet, g.name, g.createdAt, g.createdBy, g.updatedAt);
      if (inserted.changes !== 1) return false;
      this.insertMembers(g.fleet, g.name, g.devices);
      return true;
    });
  }

  get(fleet: string, name: string): GroupRecord | undefined {
    const r = this.db.prepare('SELECT * FROM device_groups WHERE fleet = ? AND name = ?').get(fleet, name) as Row | undefined;
    return r ? this.fromRow(r) : undefined;
  }

  list(filter: { fleet?: string } = {}): GroupRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM device_groups WHERE (@fleet IS NULL OR fleet = @fleet) ORDER BY fleet, name')
      .all({ fleet: filter.fleet ?? null }) as Row[];
    return rows.map((r) => this.fromRow(r));
  }

  setDevices(fleet: string, name: string, devices: string[], now: string): boolean {
    return this.withWriteLock(() => {
      const updated = this.db.prepare('UPDATE device_groups SET updated_at = ? WHERE fleet = ? AND name = ?').run(now, fleet, name);
      if (updated.changes !== 1) return false;
      this.db.prepare('DELETE FROM device_group_members WHERE fleet = ? AND group_name = ?').run(fleet, name);
      this.insertMembers(fleet, name, devices);
      return true;
    });
  }

  private insertMembers(fleet: string, group: string, devices: string[]): void {
    const insert = this.db.prepare('INSERT INTO device_group_members (fleet, group_name, device_name, position) VALUES (?, ?, ?, ?)');
    devices.forEach((d, i) => insert.run(fleet, group, d, i));
  }

  private fromRow(r: Row): GroupRecord {
    const members = this.db
      .prepare('SELECT device_name FROM device_group_members WHERE fleet = ? AND group_name = ? ORDER BY position')
      .all(r.fleet, r.name) as Row[];
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
