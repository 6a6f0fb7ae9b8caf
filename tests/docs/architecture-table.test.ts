// docs/architecture.md's table of server folders must match the tree (issue 22: "every file is
// where that table says"), so a newcomer who trusts the page lands in the right folder. The table
// is the first one under "## The server, by capability": one row per folder of server/src (the
// row `server/src/` holds the files loose at the top), its files in backticks in the last column.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SERVER_SRC = path.join(ROOT, 'server', 'src');
const SECTION = '## The server, by capability';
const TOP_ROW = 'server/src/';

interface FolderRow {
  /** `device-api` for a folder, '' for the top of server/src. */
  folder: string;
  /** Paths relative to the folder, as the table names them (`routes/meta.ts` inside api/). */
  files: string[];
  /** The file named `(principal)`, if any. */
  principal: string | undefined;
}

/** The folder table of the architecture page; throws when the section or its table is missing. */
function parseFolderTable(markdown: string): FolderRow[] {
  const start = markdown.indexOf(`\n${SECTION}\n`);
  if (start < 0) throw new Error(`docs/architecture.md has no "${SECTION}" section`);
  const lines = markdown.slice(start + SECTION.length + 2).split('\n');
  const first = lines.findIndex((l) => l.startsWith('|'));
  if (first < 0 || lines.slice(0, first).some((l) => l.startsWith('## '))) {
    throw new Error(`the "${SECTION}" section has no table`);
  }
  const rows: FolderRow[] = [];
  // Skip the header and the |---| line; the table ends at the first line that is not a row.
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim());
    const name = /^`([^`]+)`$/.exec(cells[0] ?? '')?.[1];
    if (!name) throw new Error(`a row of the folder table does not start with a folder in backticks: ${line}`);
    const filesCell = cells[cells.length - 1] ?? '';
    const files = [...filesCell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    const principal = /`([^`]+)` \(principal\)/.exec(filesCell)?.[1];
    rows.push({ folder: name === TOP_ROW ? '' : name.replace(/\/$/, ''), files, principal });
  }
  return rows;
}

/** Every file under `dir`, relative to it, with `/` separators. */
function filesUnder(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/'))
    .sort();
}

const table = parseFolderTable(fs.readFileSync(path.join(ROOT, 'docs', 'architecture.md'), 'utf8'));
const folderRows = table.filter((r) => r.folder !== '');
const foldersOnDisk = fs
  .readdirSync(SERVER_SRC, { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();

describe('docs/architecture.md: the table of server folders', () => {
  it('lists every folder of server/src, and no folder that does not exist', () => {
    const listed = folderRows.map((r) => r.folder).sort();
    const missing = foldersOnDisk.filter((f) => !listed.includes(f));
    const absent = listed.filter((f) => !foldersOnDisk.includes(f));
    expect({ missingFromTable: missing, listedButAbsent: absent }).toEqual({ missingFromTable: [], listedButAbsent: [] });
    expect(new Set(listed).size, 'a folder is listed twice').toBe(listed.length);
  });

  it('names every file loose at the top of server/src in its first row, and no other', () => {
    const top = table.find((r) => r.folder === '');
    expect(top, `the table has no \`${TOP_ROW}\` row for the files at the top of server/src`).toBeDefined();
    const onDisk = fs
      .readdirSync(SERVER_SRC, { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => e.name)
      .sort();
    expect([...top!.files].sort()).toEqual(onDisk);
  });

  it("puts every file of each folder in that folder's row, and names no file that is elsewhere", () => {
    const mismatches: string[] = [];
    for (const row of folderRows) {
      const dir = path.join(SERVER_SRC, row.folder);
      if (!fs.existsSync(dir)) continue; // reported by the first test
      const onDisk = filesUnder(dir);
      for (const f of onDisk.filter((f) => !row.files.includes(f))) {
        mismatches.push(`server/src/${row.folder}/${f} is not in the \`${row.folder}/\` row`);
      }
      for (const f of row.files.filter((f) => !onDisk.includes(f))) {
        mismatches.push(`the \`${row.folder}/\` row names ${f}, which is not in server/src/${row.folder}/`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it("names each folder's principal file, which opens with what the folder owns and may import", () => {
    const problems: string[] = [];
    for (const row of folderRows) {
      if (!row.principal) {
        problems.push(`the \`${row.folder}/\` row marks no file "(principal)"`);
        continue;
      }
      const file = path.join(SERVER_SRC, row.folder, row.principal);
      if (!fs.existsSync(file)) continue; // reported by the file test
      const lines = fs.readFileSync(file, 'utf8').split('\n');
      const headerEnd = lines.findIndex((l) => !l.startsWith('//'));
      const text = lines.slice(0, headerEnd < 0 ? lines.length : headerEnd).join(' ');
      if (!text.startsWith(`// ${row.folder}/ owns `)) problems.push(`${row.folder}/${row.principal} does not start with "// ${row.folder}/ owns ..."`);
      if (!text.includes('May import:')) problems.push(`${row.folder}/${row.principal}'s header does not say what the folder may import ("May import:")`);
    }
    expect(problems).toEqual([]);
  });
});
