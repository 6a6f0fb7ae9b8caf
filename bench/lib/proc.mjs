// What the kernel says about a process: CPU time from /proc/<pid>/stat, memory from
// /proc/<pid>/status, I/O from /proc/<pid>/io. Linux only (so is the project's fleet).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statfsSync, statSync } from 'node:fs';

let clockTicks;
/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat (100 on every Linux we run on). */
export function clkTck() {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** The fields of /proc/<pid>/stat after the command name: [0] is state, [11] utime, [12] stime, [13] cutime, [14] cstime. */
function statFields(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces; everything after its closing paren is fixed.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of the whole process (all threads), in milliseconds. */
export function cpuMs(pid) {
  const fields = statFields(pid);
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clkTck();
}

/** VmRSS and VmHWM (peak RSS, kept by the kernel) in bytes. */
export function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : null;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Bytes free for an unprivileged writer on the file system holding `dir`. */
export function freeBytes(dir) {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

export function fileSize(file) {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Samples memory every `everyMs` until stopped; keeps the largest VmRSS seen and the last VmHWM. */
export function memoryPoller(pid, everyMs = 100) {
  const result = { maxRss: 0, hwm: 0, samples: 0 };
  const poll = () => {
    try {
      const m = memory(pid);
      result.maxRss = Math.max(result.maxRss, m.rss ?? 0);
      result.hwm = Math.max(result.hwm, m.hwm ?? 0);
      result.samples += 1;
    } catch {
      // The process is gone: keep what was seen.
    }
  };
  poll();
  const timer = setInterval(poll, everyMs);
  return {
    result,
    stop() {
      clearInterval(timer);
      poll();
      return result;
    },
  };
}

/**
 * Time a process's main thread, which runs its event loop, spent runnable but waiting for a
 * core (second field of /proc/<pid>/task/<pid>/schedstat, ns), in milliseconds. Null where the
 * kernel has no schedstat (CONFIG_SCHED_INFO off).
 */
export function runQueueWaitMs(pid = process.pid) {
  try {
    const [, waitNs] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(/\s+/);
    return Number(waitNs) / 1e6;
  } catch {
    return null;
  }
}

/**
 * The machine's CPU at this moment, for machineCpuBetween: busy and total jiffies over all
 * cores (/proc/stat) and the CPU pressure stall total (/proc/pressure/cpu "some": µs during
 * which at least one runnable task waited for a core; absent on kernels without PSI).
 */
export function machineCpu() {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user/nice)
  const idle = cpu[3] + (cpu[4] ?? 0);
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  let someStallUs = null;
  try {
    someStallUs = Number(/^some .*total=(\d+)/m.exec(readFileSync('/proc/pressure/cpu', 'utf8'))?.[1] ?? NaN);
    if (!Number.isFinite(someStallUs)) someStallUs = null;
  } catch {
    // No PSI on this kernel.
  }
  return { busy: total - idle, total, someStallUs, at: performance.now() };
}

/**
 * Between two machineCpu() readings: the share of all cores' time that was busy, and the
 * share of wall time in which some runnable task had to wait for a core (PSI "some").
 */
export function machineCpuBetween(from, to) {
  const wallMs = to.at - from.at;
  return {
    busyShare: to.total > from.total ? +((to.busy - from.busy) / (to.total - from.total)).toFixed(3) : null,
    cpuWaitShare: from.someStallUs !== null && to.someStallUs !== null && wallMs > 0 ? +((to.someStallUs - from.someStallUs) / 1000 / wallMs).toFixed(3) : null,
  };
}

/**
 * CPU time (ms) of every process whose command is `comm` (e.g. 'postgres': the local
 * database's postmaster, backends and background workers), with the time of their reaped
 * children (cutime + cstime): a backend that exits between two readings moves into its
 * postmaster's, so the difference of two readings counts it once.
 */
export function cpuMsOfCommand(comm) {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== comm) continue;
      const fields = statFields(entry);
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    } catch {
      // Gone meanwhile.
    }
  }
  return (ticks * 1000) / clkTck();
}

/** How many ephemeral ports one source address has for one destination (`ip_local_port_range`), or undefined off Linux. */
export function ephemeralPorts() {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return high - low + 1;
  } catch {
    return undefined;
  }
}
