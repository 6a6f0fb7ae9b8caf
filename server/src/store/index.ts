import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

export type * from './store.js';
export { MIGRATIONS, type Migration } from './migrations.js';
export { SqliteStore } from './sqlite-store.js';

/** Opens (creating and migrating if needed) the server database at `file`. */
export function openStore(file: string): Store {
  return new SqliteStore(file);
}
