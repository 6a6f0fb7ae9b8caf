// The results table (stdout) and the JSON file under bench/results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fmtBytes } from './log.mjs';

function fmtNumber(v, unit) {
  if (v === null || v === undefined) return '-';
  if (unit === 'bytes') return fmtBytes(v);
  if (Number.isInteger(v)) return String(v);
  const abs = Math.abs(v);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return v.toFixed(digits);
}

function fmtSummary(s, unit) {
  if (s === null || s === undefined) return '-';
  const u = unit === 'bytes' ? '' : unit ? ` ${unit}` : '';
  if (typeof s === 'string') return s;
  if (typeof s === 'number') return `${fmtNumber(s, unit)}${u}`;
  if (s.median === null) return '-';
  if (s.n <= 1 || s.min === s.max) return `${fmtNumber(s.median, unit)}${u}`;
  return `${fmtNumber(s.median, unit)}${u} [${fmtNumber(s.min, unit)}–${fmtNumber(s.max, unit)}]`;
}

function fmtRatio(s) {
  if (!s || s.median === null || s.median === undefined) return '-';
  // Small ratios (bytes fetched twice of a target) keep two significant digits.
  const f = (v) => (Math.abs(v) >= 0.1 || v === 0 ? v.toFixed(2) : v.toPrecision(2));
  if (s.n <= 1 || s.min === s.max) return `${f(s.median)}×`;
  return `${f(s.median)}× [${f(s.min)}–${f(s.max)}]`;
}

/** Rows: { suite, metric, unit, value, baseline, baselineName?, ratio, target?, met? }. */
export function renderTable(rows) {
  const header = ['suite', 'measure', 'median [min–max]', 'baseline (same run)', 'ratio [min–max]', 'target', 'met'];
  const body = rows.map((r) => [
    r.suite,
    r.metric,
    fmtSummary(r.value, r.unit),
    r.baseline === undefined ? '-' : `${r.baselineName ? `${r.baselineName} ` : ''}${fmtSummary(r.baseline, r.unit)}`,
    fmtRatio(r.ratio),
    r.target ?? '',
    r.met === undefined || r.met === null ? (r.target ? 'n/a' : '') : r.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => String(b[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

export function writeResults(dir, result) {
  mkdirSync(dir, { recursive: true });
  const stamp = new Date(result.meta.startedAt).toISOString().replace(/[:.]/g, '-');
  const file = path.join(dir, `${stamp}${result.meta.mode === 'smoke' ? '-smoke' : ''}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  return file;
}
