/**
 * Running workers until told to stop. The Temporal runtime already shuts workers down gracefully
 * on SIGINT/SIGTERM (running activities get SHUTDOWN_GRACE to checkpoint); we add a watchdog so
 * workers started by `timeshare dev` end with it even when it is SIGKILLed.
 */
import type { NativeConnection, Worker } from '@temporalio/worker';

export interface RunWorkersOptions {
  /** End when the parent process goes away (workers spawned by `timeshare dev`). */
  exitWithParent?: boolean;
  log?: (line: string) => void;
}

export async function runWorkers(workers: Worker[], connection: NativeConnection, options: RunWorkersOptions = {}): Promise<void> {
  const log = options.log ?? ((line: string) => console.error(line));
  const shutdown = (why: string): void => {
    log(`shutting down workers: ${why}`);
    for (const worker of workers) {
      if (worker.getState() === 'RUNNING') worker.shutdown();
    }
  };
  let watchdog: NodeJS.Timeout | undefined;
  if (options.exitWithParent) {
    const parent = process.ppid;
    watchdog = setInterval(() => {
      if (process.ppid !== parent) shutdown(`parent process ${parent} is gone`);
    }, 500);
    watchdog.unref();
  }
  try {
    await Promise.all(workers.map((worker) => worker.run()));
  } finally {
    if (watchdog !== undefined) clearInterval(watchdog);
    await connection.close();
  }
}
