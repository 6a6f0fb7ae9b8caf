#!/usr/bin/env node
// The agent's download loop alone, by CPU time: core's downloadVerified (built dist) against the
// pipeline suite's reference (bench/workers/https-fetch.mjs onepass: sha256 + 1 MiB writev
// batches + fsync), and optionally against the loop of an earlier commit, each in a process of
// its own, in rotating order, from one local mTLS https server holding the body in memory. No
// agent, no TUF, no server: what is left is the loop, so a change to it shows here even on a
// loaded machine (docs/benchmarks.md, agent pipeline). Needs Node >= 22.18 for --against (the
// earlier commit's .ts runs with Node's type stripping).
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.join(HERE, '..');
const DIST = path.join(ROOT, 'core', 'dist', 'transport');
const HELP = `usage: node bench/download-loop.mjs [--mib N] [--rounds N] [--against COMMIT]
  --mib N          body size in MiB (default 128)
  --rounds N       rounds; each runs every variant once, in rotating order (default 6)
  --against COMMIT also run core/src/transport/streaming-download.ts as of COMMIT
Prints each process's CPU (utime+stime) and the medians, as ratios to the reference.`;

const { values } = parseArgs({
  options: { mib: { type: 'string', default: '128' }, rounds: { type: 'string', default: '6' }, against: { type: 'string' }, help: { type: 'boolean' }, role: { type: 'string' } },
  strict: false,
  allowPositionals: true,
});

if (values.help) {
  console.log(HELP);
  process.exit(0);
}

if (values.role === 'server') {
  const dir = process.argv.at(-1);
  const body = randomBytes(Number(values.mib) * 1024 * 1024);
  const pem = (f) => readFileSync(path.join(dir, f));
  const server = https.createServer({ key: pem('server.key'), cert: pem('server.crt'), ca: pem('ca.crt'), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  });
  server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port, sha256: createHash('sha256').update(body).digest('hex'), length: body.length })));
} else if (values.role === 'client') {
  // One download by downloadVerified from the module named last on the command line.
  const [modulePath, url, dir, sha256, length] = process.argv.slice(-5);
  const { createDeviceHttpsAgent } = await import(path.join(DIST, 'https-get.js'));
  const { downloadVerified } = await import(modulePath);
  const pem = (f) => readFileSync(path.join(dir, f));
  const agent = createDeviceHttpsAgent({ ca: pem('ca.crt'), cert: pem('device.crt'), key: pem('device.key') });
  const destination = path.join(dir, `out-${process.pid}`);
  const cpu0 = process.cpuUsage();
  await downloadVerified({ agent, url, destination, target: { targetPath: 'x', length: Number(length), sha256 }, onProgress: () => {} });
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000 }));
  agent.destroy();
  rmSync(destination, { force: true });
} else {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'download-loop-'));
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=ca', '-days', '1');
  for (const name of ['server', 'device']) {
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', 'san.ext');
  }
  const variants = { reference: null, current: path.join(DIST, 'streaming-download.js') };
  let earlier;
  if (values.against) {
    // Next to the dist modules so its relative imports resolve to them.
    earlier = path.join(DIST, `streaming-download-${values.against.slice(0, 12)}.ts`);
    writeFileSync(earlier, execFileSync('git', ['show', `${values.against}:core/src/transport/streaming-download.ts`], { cwd: ROOT }));
    variants[values.against.slice(0, 12)] = earlier;
  }
  const server = spawn(process.execPath, [fileURLToPath(import.meta.url), '--role', 'server', '--mib', values.mib, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const info = await new Promise((resolve) => server.stdout.once('data', (d) => resolve(JSON.parse(d))));
    const url = `https://127.0.0.1:${info.port}/x`;
    // The agent's node flags (core/systemd/meshanics-agent.service) for the agent's loop.
    const unit = readFileSync(path.join(ROOT, 'core', 'systemd', 'meshanics-agent.service'), 'utf8');
    const agentFlags = (/^Environment="NODE_OPTIONS=([^"]*)"$/m.exec(unit)?.[1] ?? '').split(' ').filter(Boolean);
    const names = Object.keys(variants);
    const cpu = Object.fromEntries(names.map((n) => [n, []]));
    for (let round = 0; round < Number(values.rounds); round++) {
      for (let k = 0; k < names.length; k++) {
        const name = names[(round + k) % names.length];
        const args =
          variants[name] === null
            ? [path.join(HERE, 'workers', 'https-fetch.mjs'), 'onepass', url, dir, path.join(dir, 'out-reference')]
            : [...agentFlags, fileURLToPath(import.meta.url), '--role', 'client', variants[name], url, dir, info.sha256, String(info.length)];
        const out = JSON.parse(execFileSync(process.execPath, args).toString().trim().split('\n').pop());
        if (out.bytes !== undefined && out.bytes !== info.length) throw new Error(`${name}: got ${out.bytes} bytes`);
        cpu[name].push(out.cpuMs);
        console.log(`round ${round + 1} ${name}: ${out.cpuMs.toFixed(0)} ms CPU`);
      }
    }
    const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    for (const n of names) {
      const perRound = cpu[n].map((v, i) => (v / cpu.reference[i]).toFixed(2)).join(' ');
      console.log(
        `${n}: median ${median(cpu[n]).toFixed(0)} ms CPU for ${values.mib} MiB, ${(median(cpu[n]) / median(cpu.reference)).toFixed(2)}x the reference (per round: ${perRound})`,
      );
    }
  } finally {
    server.kill();
    if (earlier) rmSync(earlier, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
}
