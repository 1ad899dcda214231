import fs from "node:fs";

/** Linux /proc readings: a process' CPU time and resident memory, and the machine's CPU. */

const TICKS_PER_SECOND = 100; // USER_HZ on Linux
const PAGE_BYTES = 4096;

export interface ProcSample {
  /** utime + stime, seconds. */
  cpuSeconds: number;
  rssBytes: number;
}

export function readProc(pid: number): ProcSample | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
    // The command name is in parentheses and may contain spaces: fields start after ") ".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields after the name, 0-based: state=0 … utime=11, stime=12, rss=21.
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    const rss = Number(fields[21]);
    return { cpuSeconds: (utime + stime) / TICKS_PER_SECOND, rssBytes: rss * PAGE_BYTES };
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds, per pid, of the PostgreSQL backends serving `database` (their command line is
 * "postgres: <cluster>: <user> <database> <client> …"). Other databases' backends on a shared
 * cluster are left out; the cluster's shared background processes are left out too.
 */
export function postgresBackends(database: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "latin1");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (name !== "postgres") continue;
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, "latin1").replace(/\0/g, " ");
      if (!cmd.split(" ").includes(database)) continue;
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(Number(entry), (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND);
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

/** CPU used between two readings: backends that started in between count whole; those that ended are lost. */
export function backendCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, sec] of after) total += sec - (before.get(pid) ?? 0);
  return total;
}

/** Busy and total jiffies of the whole machine (/proc/stat first line). */
export function machineCpu(): { busy: number; total: number } {
  const line = fs.readFileSync("/proc/stat", "latin1").split("\n", 1)[0] ?? "";
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

export interface ProcWatch {
  /** Stops sampling; peak RSS seen and CPU seconds used since start. */
  stop(): { peakRssBytes: number; cpuSeconds: number };
}

/** Samples `pid` every `everyMs` for its peak RSS; CPU is the difference between start and stop. */
export function watchProcess(pid: number, everyMs = 100): ProcWatch {
  const first = readProc(pid);
  let peak = first?.rssBytes ?? 0;
  let last = first;
  const timer = setInterval(() => {
    const s = readProc(pid);
    if (!s) return;
    last = s;
    if (s.rssBytes > peak) peak = s.rssBytes;
  }, everyMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      const end = readProc(pid) ?? last;
      if (end && end.rssBytes > peak) peak = end.rssBytes;
      return { peakRssBytes: peak, cpuSeconds: end && first ? end.cpuSeconds - first.cpuSeconds : 0 };
    },
  };
}
