const mods = process.argv.slice(2);
const base = process.memoryUsage().rss;
let prev = base;
console.log('node baseline', (base / 1048576).toFixed(1));
for (const m of mods) {
  await import(m);
  globalThis.gc?.();
  await new Promise((r) => setTimeout(r, 200));
  const rss = process.memoryUsage().rss;
  console.log(m.padEnd(40), '+' + ((rss - prev) / 1048576).toFixed(1), '=', (rss / 1048576).toFixed(1));
  prev = rss;
}
