// Column decoders shared by the repositories (rows come back as loosely typed records; on
// PostgreSQL, BIGINT and COUNT(*) arrive as strings, which num() reads the same way).
// Listings break timestamp ties by rowid, i.e. insertion order (PostgreSQL: an explicit
// BIGSERIAL column of that name, see migrations-postgres.ts).
export type { Row } from './db.js';

export const str = (v: unknown): string => String(v);
export const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
export const num = (v: unknown): number => Number(v);
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
export const json = <T>(v: unknown, fallback: T): T => (typeof v === 'string' && v !== '' ? (JSON.parse(v) as T) : fallback);
