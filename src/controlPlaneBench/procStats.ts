/**
 * CPU time and resident memory of a process, read from /proc (Linux), so the benchmark measures
 * its own process, the dev server and child worker processes the same way.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  if (!Number.isInteger(ticksPerSecond) || ticksPerSecond <= 0) throw new Error(`getconf CLK_TCK gave ${String(ticksPerSecond)}`);
  return ticksPerSecond;
}

function readProc(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch (error) {
    throw new Error(`cannot read /proc/${pid}/${file} (process gone, or not Linux): ${String(error)}`);
  }
}

/** User + system CPU milliseconds the process has used so far. */
export function cpuMs(pid: number): number {
  const stat = readProc(pid, 'stat');
  // The command name (field 2) may contain spaces: fields are counted after its closing paren.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unexpected /proc/${pid}/stat: ${stat.slice(0, 200)}`);
  return ((utime + stime) * 1000) / clockTicks();
}

/** Resident set size in bytes. */
export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readProc(pid, 'status'));
  if (match?.[1] === undefined) throw new Error(`no VmRSS in /proc/${pid}/status: the process has exited (a zombie until reaped)`);
  return Number(match[1]) * 1024;
}

/** Samples the RSS of some processes every `intervalMs` and keeps the peak of their sum. */
export class RssSampler {
  private peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: () => readonly number[],
    intervalMs = 250,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): number {
    const total = this.pids().reduce((sum, pid) => sum + rssBytes(pid), 0);
    this.peak = Math.max(this.peak, total);
    return total;
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}
