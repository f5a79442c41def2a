/**
 * Runs an activity function in an activity context of our own, with its cancellation in the
 * test's hands (no worker, no server): for activities whose behaviour under cancellation matters.
 */
import path from 'node:path';
import { asyncLocalStorage, CancelledFailure, Context, type Info } from '@temporalio/activity';
import { noopMetricMeter } from '@temporalio/common';
import { createGpuNodeActivities } from '../../src/activities/gpuNode';
import type { AgentEnvironment, RolloutEngine } from '../../src/engines/types';

/** What a test watches of the activity: each heartbeat's details, each warning it logs. */
export interface ActivityWatch {
  heartbeat?(details: unknown): void;
  warn?(message: string): void;
}

/** An activity call in a context of our own, with its cancellation in the test's hands. */
export function inActivity<T>(
  call: () => Promise<T>,
  activityType = 'runRolloutShard',
  watch: ActivityWatch = {},
): { result: Promise<T>; cancel(reason: 'CANCELLED' | 'TIMED_OUT'): void } {
  const abort = new AbortController();
  let rejectCancelled: (error: unknown) => void = () => undefined;
  const cancelled = new Promise<never>((_, reject) => (rejectCancelled = reject));
  cancelled.catch(() => undefined);
  const info = { attempt: 1, isLocal: false, activityType, activityId: '1' } as unknown as Info;
  const log = { trace: () => undefined, debug: () => undefined, info: () => undefined, warn: (message: string) => watch.warn?.(message), error: () => undefined, log: () => undefined };
  const ContextClass = Context as unknown as new (...args: unknown[]) => Context;
  const context = new ContextClass(info, cancelled, abort.signal, (details: unknown) => watch.heartbeat?.(details), undefined, log, noopMetricMeter, undefined);
  return {
    result: asyncLocalStorage.run(context, call),
    cancel(reason) {
      const failure = new CancelledFailure(reason);
      abort.abort(failure);
      rejectCancelled(failure);
    },
  };
}


/**
 * A gpu-node worker's activities over the given engines (rank i: engines[i]), for activities that
 * need neither a store, an environment nor a trainer (weight sync's engine side).
 */
export function engineOnlyNodeActivities(runId: string, engines: readonly unknown[], weightsDir = '/nonexistent') {
  return createGpuNodeActivities({
    node: 0,
    runId,
    engines: new Map(engines.map((engine, rank) => [rank, engine as RolloutEngine])),
    trainer: undefined,
    environment: {} as AgentEnvironment,
    store: () => {
      throw new Error('no store in these tests');
    },
    weightsPath: () => path.join(weightsDir, 'unused'),
    weightsDir: () => weightsDir,
    timeScale: 1,
    heartbeatIntervalMs: 60_000,
    now: () => Date.now(),
  });
}
