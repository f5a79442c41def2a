/**
 * Creating workers all or none, and running them until told to stop. The Temporal runtime already
 * shuts workers down gracefully on SIGINT/SIGTERM (running activities get SHUTDOWN_GRACE to
 * checkpoint); we add a watchdog so workers started by `timeshare dev` end with it even when it
 * is SIGKILLed.
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

/**
 * Creates every worker or none. A created worker holds its connection until it has run: where one
 * creation fails, the others are run and shut down at once, so the connection can close and the
 * first failure is what the caller sees (not "Cannot close connection while Workers hold a
 * reference to it").
 */
export async function createAllOrNone(creations: ReadonlyArray<Promise<Worker>>): Promise<Worker[]> {
  const results = await Promise.allSettled(creations);
  const created = results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed === undefined) return created;
  await disposeUnstarted(created, failed.reason);
  throw failed.reason;
}

/**
 * Runs each worker that was created but never run and shuts it down at once, so it lets go of
 * its connection. `cause` is what made them unwanted: thrown with any disposal failure beside it.
 */
export async function disposeUnstarted(workers: readonly Worker[], cause: unknown): Promise<void> {
  const results = await Promise.allSettled(workers.filter((worker) => worker.getState() === 'INITIALIZED').map((worker) => worker.runUntil(Promise.resolve())));
  const failures = results.flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : []));
  if (failures.length > 0) throw new AggregateError([cause, ...failures], `disposing of ${failures.length} unstarted worker(s) failed after: ${cause instanceof Error ? cause.message : String(cause)}`);
}
