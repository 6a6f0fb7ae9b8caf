// The PostgreSQL side of the server benchmarks (run.mjs --database-url): every suite gets a
// database of its own, created empty and dropped afterwards, so one suite's rows never
// slow down or flatter the next, and nothing is left on the operator's server.
import crypto from 'node:crypto';
import pg from 'pg';

async function adminQuery(baseUrl, sql, params = []) {
  const client = new pg.Client({ connectionString: baseUrl, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** `postgresql:` whatever the URL spells (postgres:// and postgresql:// are the same thing). */
export function backendOf(url) {
  return new URL(url).protocol.replace(/:$/, '').replace(/^postgres$/, 'postgresql');
}

/** A new, empty database on the server `baseUrl` points at; returns its URL. */
export async function createBenchDatabase(baseUrl) {
  const name = `meshanics_bench_${crypto.randomBytes(5).toString('hex')}`;
  // Identifiers cannot be bound as parameters; the name is ours and only [a-z0-9_].
  await adminQuery(baseUrl, `CREATE DATABASE ${name}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropBenchDatabase(url) {
  const name = new URL(url).pathname.slice(1);
  if (!/^meshanics_bench_[0-9a-f]+$/.test(name)) throw new Error(`refusing to drop ${name}: not a benchmark database`);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  await adminQuery(admin.toString(), `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/** Bytes the database takes on disk (tables, indexes, TOAST; not the shared WAL). */
export async function databaseBytes(url) {
  const [row] = await adminQuery(url, 'SELECT pg_database_size(current_database())::bigint AS bytes');
  return Number(row.bytes);
}
