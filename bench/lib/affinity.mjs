// CPU affinity (taskset, util-linux) for the fleet suite's split runs: the load generators on
// some cores and the system under test on the others, so neither waits for the other's CPU
// and a latency the devices measure is the server's. Every thread of a process is pinned
// (-a); threads and processes it starts later inherit the mask.
import { execFileSync } from 'node:child_process';

/** Pins every thread of `pid` to `cpus` (a taskset list such as "1" or "0,2-3"). */
export function pin(pid, cpus) {
  execFileSync('taskset', ['-a', '-p', '-c', String(cpus), String(pid)], { stdio: 'ignore' });
}

/** The CPUs `pid` may run on, as a taskset list. */
export function affinityOf(pid) {
  const out = execFileSync('taskset', ['-p', '-c', String(pid)], { encoding: 'utf8' });
  return out.slice(out.lastIndexOf(':') + 1).trim();
}

/**
 * Pins the local PostgreSQL server's processes (the postmaster and its backends; backends it
 * forks later inherit the postmaster's mask) and returns a function that restores each one's
 * mask as it was: the database outlives the run.
 */
export function pinPostgres(cpus) {
  let pids = [];
  try {
    pids = execFileSync('pgrep', ['-x', 'postgres'], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    throw new Error('serverCpus with PostgreSQL: no local postgres process found (pgrep -x postgres); the database must run on this machine to be pinned');
  }
  const before = pids.map((pid) => [pid, affinityOf(pid)]);
  for (const pid of pids) pin(pid, cpus);
  return () => {
    for (const [pid, mask] of before) {
      try {
        pin(pid, mask);
      } catch {
        // A backend that has exited since.
      }
    }
  };
}
