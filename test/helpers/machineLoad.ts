/**
 * How busy the machine is while a test runs: runnable tasks sampled from /proc/loadavg during the
 * run. The one-minute load average is no measure of a run of half a minute: it still reads high
 * a minute after other work ended (a test run right after a suite), and it smooths away bursts.
 * Where /proc/loadavg does not exist, the one-minute load average is sampled instead.
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

export interface LoadFigures {
  /** Mean runnable tasks besides the sampler's own thread. */
  meanRunnable: number;
  /** The most seen at one sample. */
  maxRunnable: number;
  samples: number;
  source: '/proc/loadavg' | 'os.loadavg';
}

export interface LoadSampler {
  stop(): LoadFigures;
}

function runnableNow(): { runnable: number; source: LoadFigures['source'] } {
  let text: string;
  try {
    text = readFileSync('/proc/loadavg', 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return { runnable: loadavg()[0]!, source: 'os.loadavg' };
  }
  // "0.42 1.96 2.38 3/80 10223": the fourth field is runnable/total; the reader itself is one of them.
  const running = /^\S+ \S+ \S+ (\d+)\//.exec(text)?.[1];
  if (running === undefined) throw new Error(`/proc/loadavg: unexpected contents ${JSON.stringify(text)}`);
  return { runnable: Math.max(0, Number(running) - 1), source: '/proc/loadavg' };
}

export function sampleLoad(intervalMs = 100): LoadSampler {
  const seen: number[] = [];
  let source: LoadFigures['source'] = '/proc/loadavg';
  const take = (): void => {
    const now = runnableNow();
    seen.push(now.runnable);
    source = now.source;
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return { meanRunnable: seen.reduce((a, b) => a + b, 0) / seen.length, maxRunnable: Math.max(...seen), samples: seen.length, source };
    },
  };
}
