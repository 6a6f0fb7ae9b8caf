#!/usr/bin/env node
// npm run demo: the whole path of an update, end to end, on the embedded default (SQLite).
// A server on a temporary data dir, one device with its own certificate, model v1 published,
// signed into TUF, assigned and applied until healthy; then a bad v2 whose readiness file
// never appears, rolled back by the agent on its own. Every state is printed as the server
// records it. Everything runs on 127.0.0.1 and is shut down at the end.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { serverCli, startAgent, startServer, waitForAssignment } from './lib/processes.mjs';

if (process.argv.includes('--help')) {
  console.log('Usage: npm run demo [-- --keep]\n  Runs the end-to-end demo on a temporary data dir; --keep leaves the directory for inspection.');
  process.exit(0);
}
const keep = process.argv.includes('--keep');
const say = (msg) => console.log(`[demo] ${msg}`);
const root = await mkdtemp(path.join(os.tmpdir(), 'meshanics-demo-'));
const serverDir = path.join(root, 'server');
const certDir = path.join(root, 'device-credentials');
const agentDir = path.join(root, 'agent');
const children = [];
let failed = false;

function printState(model, version) {
  return (r) => {
    const extra = r.state === 'DOWNLOADING' && r.bytesTotal ? ` ${r.bytesDone}/${r.bytesTotal} bytes` : '';
    console.log(`   ${model} ${version.padEnd(4)} ${r.state.padEnd(11)}${extra}${r.reason ? `  ${r.reason}` : ''}`);
  };
}

/** `assign` of detector@VERSION to demo/edge-1, probed by the readiness file app/ready-VERSION. */
function assignDetector(version, { timeoutSeconds, attempts }) {
  const ready = path.join(root, 'app', `ready-${version}`);
  const probe = ['--probe-type', 'file', '--probe-spec', JSON.stringify({ path: ready }), '--probe-timeout', String(timeoutSeconds), '--probe-attempts', String(attempts)];
  return serverCli(serverDir, ['assign', '--fleet', 'demo', '--device', 'edge-1', '--artifact', `detector@${version}`, ...probe]);
}

try {
  say(`data under ${root}`);
  const server = await startServer(serverDir);
  children.push(server);
  say(`server listening: device API ${server.grpc} (mTLS), TUF repository ${server.artifacts}`);

  await serverCli(serverDir, ['device', 'issue-cert', '--fleet', 'demo', '--name', 'edge-1', '--out', certDir]);
  say('device demo/edge-1 has its certificate and the pinned TUF root');

  const agent = startAgent(server, certDir, agentDir);
  children.push(agent);
  await agent.waitForLine((l) => l && l.msg === 'registered');
  say('agent registered over mutual TLS');

  const readyDir = path.join(root, 'app');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(readyDir, { recursive: true });

  // v1: the application signals readiness for it (a non-empty readiness file).
  const v1 = randomBytes(2 * 1024 * 1024);
  const v1File = path.join(root, 'detector-v1.onnx');
  await writeFile(v1File, v1);
  const p1 = await serverCli(serverDir, ['artifact', 'publish', v1File, '--name', 'detector', '--version', '1.0.0', '--kind', 'model', '--spec', '{"fileName":"detector.onnx"}']);
  say(`published detector 1.0.0 into TUF: ${p1.targetPath} sha256 ${p1.sha256.slice(0, 16)}… ${p1.length} bytes`);
  await writeFile(path.join(readyDir, 'ready-1.0.0'), 'loaded\n');
  const a1 = await assignDetector('1.0.0', { timeoutSeconds: 2, attempts: 3 });
  say(`assigned detector 1.0.0 to edge-1 (probe: readiness file)`);
  const r1 = await waitForAssignment(serverDir, a1.assignmentId, { onState: printState('detector', '1.0.0') });
  const live = path.join(agentDir, 'artifacts', 'model', 'detector', 'detector.onnx');
  if (r1.state !== 'HEALTHY' || !(await readFile(live)).equals(v1)) throw new Error(`v1 ended ${r1.state}`);
  say(`detector 1.0.0 is live at ${live}`);

  // v2: its readiness file never appears, so the probe fails and the agent rolls back alone.
  const v2 = randomBytes(2 * 1024 * 1024);
  const v2File = path.join(root, 'detector-v2.onnx');
  await writeFile(v2File, v2);
  await serverCli(serverDir, ['artifact', 'publish', v2File, '--name', 'detector', '--version', '2.0.0', '--kind', 'model', '--spec', '{"fileName":"detector.onnx"}']);
  say('published detector 2.0.0 (a bad build: it never becomes ready)');
  const a2 = await assignDetector('2.0.0', { timeoutSeconds: 1, attempts: 2 });
  const r2 = await waitForAssignment(serverDir, a2.assignmentId, { onState: printState('detector', '2.0.0') });
  if (r2.state !== 'ROLLED_BACK') throw new Error(`v2 ended ${r2.state}, expected ROLLED_BACK`);
  if (!(await readFile(live)).equals(v1)) throw new Error('v1 is not live after the rollback');
  say('detector 2.0.0 was rolled back by the agent; 1.0.0 is live again, byte for byte');
} catch (err) {
  failed = true;
  console.error(`[demo] FAILED: ${err.stack || err}`);
  for (const c of children) console.error(`--- last ${c.name} lines ---\n${c.lines.slice(-20).join('\n')}`);
} finally {
  for (const c of children.reverse()) await c.stop();
  if (!keep) await rm(root, { recursive: true, force: true });
  say(failed ? 'stopped after a failure' : 'done: everything shut down');
}
process.exit(failed ? 1 : 0);
