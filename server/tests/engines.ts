// The two database engines the store runs on, for tests that must hold on both. SQLite: a
// file in a temp dir. PostgreSQL: a fresh database per store (CREATE DATABASE
// meshanics_t_<random>), dropped after the importing test file, on the server at
// MESHANICS_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test, see
// ../shared/ENVIRONMENT.md). When PostgreSQL cannot be reached the PostgreSQL cases are
// skipped saying why, except under CI=true, where they fail: CI must test both engines.
import * as crypto from 'node:crypto';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll } from 'vitest';
import { tempDir } from './helpers.js';

export const POSTGRES_BASE_URL = process.env.MESHANICS_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

export interface Engine {
  name: 'sqlite' | 'postgres';
  /** A location openStore accepts, for a database nobody used yet. */
  fresh(): Promise<string>;
  /** Runs SQL directly against the database at `location`, behind the store's back. */
  exec(location: string, sql: string): Promise<Array<Record<string, unknown>>>;
}

export const sqliteEngine: Engine = {
  name: 'sqlite',
  fresh: async () => path.join(tempDir(), `m-${crypto.randomBytes(4).toString('hex')}.db`),
  exec: async (location, sql) => {
    const db = new Database(location);
    try {
      const stmt = db.prepare(sql);
      if (stmt.reader) return stmt.all() as Array<Record<string, unknown>>;
      stmt.run();
      return [];
    } finally {
      db.close();
    }
  },
};

function withDatabase(base: string, name: string): string {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_BASE_URL, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

const created: string[] = [];
afterAll(async () => {
  for (const name of created.splice(0)) {
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
  }
});

/** Why PostgreSQL cannot be used, or undefined when it answers. */
export async function postgresUnavailable(): Promise<string | undefined> {
  try {
    await adminQuery('SELECT 1');
    return undefined;
  } catch (err) {
    return `PostgreSQL at ${POSTGRES_BASE_URL.replace(/\/\/[^@]*@/, '//')} is unreachable (${(err as Error).message}); set MESHANICS_TEST_DATABASE_URL or start it (scripts/test-all.sh does)`;
  }
}

/** A fresh, empty PostgreSQL database, dropped after the importing test file. */
export async function freshPostgresDatabase(): Promise<string> {
  const name = `meshanics_t_${crypto.randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  created.push(name);
  return withDatabase(POSTGRES_BASE_URL, name);
}

export const postgresEngine: Engine = {
  name: 'postgres',
  fresh: freshPostgresDatabase,
  exec: async (location, sql) => {
    const client = new pg.Client({ connectionString: location });
    await client.connect();
    try {
      return (await client.query(sql)).rows as Array<Record<string, unknown>>;
    } finally {
      await client.end();
    }
  },
};

/**
 * The engines to run on: always SQLite; PostgreSQL when reachable (or under CI, where an
 * unreachable one makes its cases fail instead of skipping). `skipped` says why it is not.
 */
export async function testEngines(): Promise<{ engines: Engine[]; skipped: string | undefined }> {
  const reason = await postgresUnavailable();
  if (reason === undefined || IN_CI) return { engines: [sqliteEngine, postgresEngine], skipped: undefined };
  console.warn(`skipping the PostgreSQL cases: ${reason}`);
  return { engines: [sqliteEngine], skipped: reason };
}
