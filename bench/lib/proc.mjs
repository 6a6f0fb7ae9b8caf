// What the kernel says about a process: CPU time from /proc/<pid>/stat, memory from
// /proc/<pid>/status, I/O from /proc/<pid>/io. Linux only (so is the project's fleet).
import { execFileSync } from 'node:child_process';
import { readFileSync, statfsSync, statSync } from 'node:fs';

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

/** utime + stime of the whole process (all threads), in milliseconds. */
export function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces; everything after its closing paren is fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / clkTck();
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
