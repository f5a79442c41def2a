/**
 * The activity proxies of the iteration workflow: store bookkeeping that the workflow awaits at
 * once as local activities on the orchestrator worker that runs it (no task-queue round trip),
 * background store work and the batch watch as normal activities, rank and trainer work on their
 * nodes' queues.
 */
import { ActivityCancellationType, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';
import type { RankId } from '../gpu/layout';
import type { GpuNodeActivities, OrchestratorActivities } from '../contract/activities';
import { orchestratorQueue, rankQueue, trainerQueue } from '../contract/naming';
import type { RunSpec } from '../contract/types';

export interface IterationActivities {
  /** Store bookkeeping awaited at once (admit, settle, manifest, drop, describe): local activities. */
  bookkeeping: ReturnType<typeof proxyLocalActivities<OrchestratorActivities>>;
  /**
   * Store work that runs while the workflow goes on (the batch's per-sample marking; a manifest or
   * an admission beside other work): a local activity would hold the workflow task, and every
   * command issued with it, until it ends.
   */
  background: ReturnType<typeof proxyActivities<OrchestratorActivities>>;
  /** The batch watch: runs until the batch is complete. */
  batchWatcher: ReturnType<typeof proxyActivities<OrchestratorActivities>>;
  rank(rank: RankId): ReturnType<typeof proxyActivities<GpuNodeActivities>>;
  shard(rank: RankId): ReturnType<typeof proxyActivities<GpuNodeActivities>>;
  /**
   * Best effort, one attempt bounded by the heartbeat timeout: the direct stop (a node that does not
   * answer soon is left to the cancellation) and the KV capacity read (no answer: no report yet).
   */
  bestEffort(rank: RankId): ReturnType<typeof proxyActivities<GpuNodeActivities>>;
  trainer(node: number): ReturnType<typeof proxyActivities<GpuNodeActivities>>;
}

export function iterationActivities(spec: RunSpec): IterationActivities {
  const heartbeatTimeout = spec.heartbeatTimeoutMs;
  const retry: RetryPolicy = {
    initialInterval: spec.activityRetry.initialIntervalMs,
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    maximumAttempts: spec.activityRetry.maximumAttempts,
  };
  // An activity on a rank or trainer queue that no worker picks up within the lost-node timeout
  // has no live worker behind it (docs/design.md §3.2).
  const onNode = { heartbeatTimeout, retry, ...(spec.lostNodeTimeoutMs === undefined ? {} : { scheduleToStartTimeout: spec.lostNodeTimeoutMs }) };
  const orchestrator = orchestratorQueue(spec.taskQueuePrefix);
  return {
    bookkeeping: proxyLocalActivities<OrchestratorActivities>({ startToCloseTimeout: '10 minutes', retry }),
    background: proxyActivities<OrchestratorActivities>({ taskQueue: orchestrator, startToCloseTimeout: '10 minutes', heartbeatTimeout, retry }),
    batchWatcher: proxyActivities<OrchestratorActivities>({ taskQueue: orchestrator, startToCloseTimeout: '7 days', heartbeatTimeout, retry }),
    rank: (rank) => proxyActivities<GpuNodeActivities>({ taskQueue: rankQueue(spec.taskQueuePrefix, rank), startToCloseTimeout: '30 minutes', ...onNode }),
    shard: (rank) =>
      proxyActivities<GpuNodeActivities>({
        taskQueue: rankQueue(spec.taskQueuePrefix, rank),
        startToCloseTimeout: '7 days',
        ...onNode,
        // Wait for the shard to checkpoint its samples before the workflow moves them elsewhere:
        // this is what makes a re-shard exact-once.
        cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        retry: { ...retry, maximumAttempts: Math.max(20, spec.activityRetry.maximumAttempts) },
      }),
    bestEffort: (rank) =>
      proxyActivities<GpuNodeActivities>({ taskQueue: rankQueue(spec.taskQueuePrefix, rank), scheduleToCloseTimeout: heartbeatTimeout, retry: { maximumAttempts: 1 } }),
    trainer: (node) => proxyActivities<GpuNodeActivities>({ taskQueue: trainerQueue(spec.taskQueuePrefix, node), startToCloseTimeout: '2 hours', ...onNode }),
  };
}
