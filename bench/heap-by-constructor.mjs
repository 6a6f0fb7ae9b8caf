#!/usr/bin/env node
// What grew between two V8 heap snapshots, by constructor: node bench/heap-by-constructor.mjs
// A.heapsnapshot B.heapsnapshot [--per N] [--top 40]. Sums each node's self size and count by
// (type, constructor name) in both and prints the largest differences; --per N divides them
// by N (e.g. the connections added between the snapshots: bytes per connection). Self sizes,
// not retained ones: every object a connection adds is counted once, under its own
// constructor. The conn-memory suite writes such snapshots (--set conn-memory.heapSnapshotDir=DIR).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { per: { type: 'string', default: '1' }, top: { type: 'string', default: '40' }, help: { type: 'boolean', default: false } },
});
if (values.help || positionals.length !== 2) {
  console.log('Usage: node bench/heap-by-constructor.mjs A.heapsnapshot B.heapsnapshot [--per N] [--top 40]');
  process.exit(values.help ? 0 : 2);
}

function byConstructor(file) {
  const snap = JSON.parse(readFileSync(file, 'utf8'));
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const out = new Map();
  const nodes = snap.nodes;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + iType]];
    // Strings, code and numbers by type; objects and closures by constructor or function name.
    const name = type === 'object' || type === 'closure' || type === 'native' ? `${type} ${snap.strings[nodes[i + iName]]}` : `(${type})`;
    const e = out.get(name) ?? { size: 0, count: 0 };
    e.size += nodes[i + iSize];
    e.count += 1;
    out.set(name, e);
  }
  return out;
}

const [a, b] = positionals.map(byConstructor);
const per = Number(values.per);
const rows = [];
for (const name of new Set([...a.keys(), ...b.keys()])) {
  const x = a.get(name) ?? { size: 0, count: 0 };
  const y = b.get(name) ?? { size: 0, count: 0 };
  rows.push({ name, size: (y.size - x.size) / per, count: (y.count - x.count) / per });
}
rows.sort((p, q) => Math.abs(q.size) - Math.abs(p.size));
const total = rows.reduce((s, r) => s + r.size, 0);
console.log(`total self size ${total > 0 ? '+' : ''}${total.toFixed(0)} bytes${per !== 1 ? ` per ${per === 1 ? '' : 'unit'} (÷ ${per})` : ''}`);
console.log('bytes\tcount\tconstructor');
for (const r of rows.slice(0, Number(values.top))) console.log(`${r.size.toFixed(0)}\t${r.count.toFixed(2)}\t${r.name}`);
