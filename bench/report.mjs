#!/usr/bin/env node
// Prints the results table of one or more bench/results/*.json files (rows in file order),
// e.g. to put suites run separately side by side: node bench/report.mjs A.json B.json#idle
// (FILE#SUITE,... keeps only those suites' rows of that file).
import { readFileSync } from 'node:fs';
import { renderTable } from './lib/report.mjs';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node bench/report.mjs RESULTS.json[#SUITE,...] [MORE.json ...]');
  process.exit(2);
}
const rows = [];
for (const arg of files) {
  const [file, only] = arg.split('#');
  const keep = only ? new Set(only.split(',')) : undefined;
  const result = JSON.parse(readFileSync(file, 'utf8'));
  const suites = Object.entries(result.suites)
    .filter(([name]) => !keep || keep.has(name))
    .map(([name, s]) => `${name} ${Math.round(s.seconds)} s, load ${s.loadAverage?.before?.toFixed(1) ?? '?'}→${s.loadAverage?.after?.toFixed(1) ?? '?'}`)
    .join('; ');
  console.log(
    `${file}: ${result.meta.mode} run ${result.meta.startedAt}, git ${result.meta.git}${Object.keys(result.meta.overrides ?? {}).length ? `, overrides ${JSON.stringify(result.meta.overrides)}` : ''} (${suites})`,
  );
  rows.push(...result.rows.filter((r) => !keep || keep.has(r.suite)));
}
console.log(renderTable(rows));
