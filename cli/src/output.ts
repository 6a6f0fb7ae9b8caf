// Human output: aligned tables, key/value blocks, sizes and times. `--json` bypasses all of it.

export interface Out {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

export function line(out: NodeJS.WritableStream, text = ''): void {
  out.write(`${text}\n`);
}

export function printJson(out: NodeJS.WritableStream, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

function width(s: string): number {
  return [...s].length;
}

/** An aligned table; the last column is never padded. */
export function table(headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c)).replace(/\s*\n\s*/g, ' ')));
  const widths = headers.map((h, i) => Math.max(width(h), ...cells.map((r) => width(r[i] ?? ''))));
  const render = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i]! - width(c))))
      .join('  ')
      .trimEnd();
  return [render(headers), ...cells.map(render)].join('\n');
}

/** `key: value` lines, keys aligned. */
export function keyValues(pairs: Array<[string, string | number | boolean | null | undefined]>): string {
  const w = Math.max(...pairs.map(([k]) => width(k)));
  return pairs.map(([k, v]) => `${k}:${' '.repeat(w - width(k) + 1)}${v === null || v === undefined || v === '' ? '-' : String(v)}`).join('\n');
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}

/** `3s ago`, `5m ago`, `2h ago`, `4d ago` (or `in 5m` for the future). */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const diff = Math.round((now - t) / 1000);
  const abs = Math.abs(diff);
  const s = abs < 60 ? `${abs}s` : abs < 3600 ? `${Math.floor(abs / 60)}m` : abs < 86400 ? `${Math.floor(abs / 3600)}h` : `${Math.floor(abs / 86400)}d`;
  return diff >= 0 ? `${s} ago` : `in ${s}`;
}

/** `2026-01-02 03:04:05Z` */
export function when(iso: string | null | undefined): string {
  if (!iso) return '-';
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  return `${t.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

export function bar(done: number, total: number, size = 20): string {
  const ratio = total > 0 ? Math.min(1, done / total) : 0;
  const full = Math.round(ratio * size);
  return `[${'#'.repeat(full)}${'-'.repeat(size - full)}]`;
}

/** A footer for a page that is not everything. */
export function pageFooter(page: { items: unknown[]; total: number; offset: number }): string | undefined {
  if (page.items.length >= page.total && page.offset === 0) return undefined;
  if (page.items.length === 0) return `(none at offset ${page.offset}; ${page.total} in total)`;
  return `(${page.offset + 1}-${page.offset + page.items.length} of ${page.total}; use --offset N or --all for more)`;
}
