/**
 * The transitions' chain of workflow tasks and activity round trips with no work in them: what
 * Temporal and the SDK alone cost per transition on this machine (scripts/hop-floor.ts).
 */
import { executeChild, proxyActivities } from '@temporalio/workflow';

/** Each step of the chains, under the name its counterpart has in the pipeline; none does any work. */
export const FLOOR_STEPS = ['rollout', 'batchWatch', 'stopShards', 'releaseAndOnload', 'trainStep', 'trainerOffload', 'syncAndReload', 'stopAndRelease', 'stopSyncAndReload'] as const;
export type FloorActivities = Record<(typeof FLOOR_STEPS)[number], () => Promise<void>>;

/**
 * `pipeline`: the hops the iteration program takes today (docs/benchmarks.md, transition steps).
 * `merged`: the fewest a transition needs if each node's steps of a phase were one activity
 * (stop + release; stop + sync + reload) and the trainer's onload were part of its train step.
 */
export const FLOOR_CHAINS = ['pipeline', 'merged'] as const;
export type FloorChain = (typeof FLOOR_CHAINS)[number];

export interface FloorIterationInput {
  chain: FloorChain;
  /** Shard activities: one per rank, as the pipeline launches them, or one per node. */
  shards: number;
  /** One activity per node where the pipeline stops, releases or syncs a node's ranks. */
  nodes: number;
  nodeQueue: string;
  /** Each shard on its rank's own queue (`<nodeQueue>-rank-<r>`), as the pipeline schedules them; else on the node queue. */
  rankQueues: boolean;
}

export async function floorIteration({ chain, shards, nodes, nodeQueue, rankQueues }: FloorIterationInput): Promise<void> {
  const steps = proxyActivities<FloorActivities>({ taskQueue: nodeQueue, startToCloseTimeout: '1 minute' });
  const shard = (index: number) => (rankQueues ? proxyActivities<FloorActivities>({ taskQueue: `${nodeQueue}-rank-${index}`, startToCloseTimeout: '1 minute' }) : steps).rollout();
  const every = (count: number, step: () => Promise<void>) => Promise.all(Array.from({ length: count }, () => step()));
  await Promise.all(Array.from({ length: shards }, (_, index) => shard(index))); // the shards; the batch watch answers once they end
  await steps.batchWatch();
  if (chain === 'pipeline') {
    await every(nodes, steps.stopShards); // the seal task's stop; its answers wake the settle task
    await steps.releaseAndOnload();
    await steps.trainStep();
    await Promise.all([every(nodes, steps.stopShards), steps.trainerOffload()]);
    await every(nodes, steps.syncAndReload);
  } else {
    await every(nodes, steps.stopAndRelease);
    await steps.trainStep();
    await Promise.all([every(nodes, steps.stopSyncAndReload), steps.trainerOffload()]);
  }
}

/** One child workflow per iteration, as the run workflow starts them. */
export async function floorRun(input: FloorIterationInput & { iterations: number }): Promise<void> {
  for (let k = 0; k < input.iterations; k++) {
    await executeChild(floorIteration, { args: [{ chain: input.chain, shards: input.shards, nodes: input.nodes, nodeQueue: input.nodeQueue, rankQueues: input.rankQueues }], workflowId: `${input.nodeQueue}-iter-${k}` });
  }
}
