// How SQLite joins a row set passed as one JSON parameter (store/sql-rows.ts textRowSet).
// Flattened into the join, the wave start's UPDATE was driven from rollout_devices and scanned
// the whole document once per rollout device (10,000 x 6,000 rows at a wave start: seconds
// with the event loop blocked); materialized, each row searches the table by primary key.
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { openStore } from '../src/store/index.js';
import { rowSetParams, textRowSet } from '../src/store/sql-rows.js';
import { tempDir } from './helpers.js';

const COLUMNS = ['device_id', 'assignment_id'] as const;

describe('row sets on SQLite', () => {
  it('materializes the row set and searches rollout_devices by its primary key for each row', async () => {
    const file = path.join(tempDir(), 'plans.db');
    await (await openStore(file)).close();
    const db = new Database(file);
    try {
      const sql = `UPDATE rollout_devices SET assignment_id = s.assignment_id FROM (${textRowSet('sqlite', COLUMNS)}) AS s
        WHERE rollout_devices.rollout_id = ? AND rollout_devices.device_id = s.device_id`;
      const params = [...rowSetParams('sqlite', COLUMNS, [['d1', 'a1']]), 'r1'];
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>).map((r) => r.detail);
      expect(plan.some((d) => /^MATERIALIZE/.test(d))).toBe(true);
      expect(plan.some((d) => /SEARCH rollout_devices .*\(rollout_id=\? AND device_id=\?\)/.test(d))).toBe(true);
    } finally {
      db.close();
    }
  });
});
