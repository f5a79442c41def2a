/**
 * The task queues a gpu-node worker serves: a pure function of the layout, apart from the worker
 * code so that whoever only starts worker processes (`dev`) does not load the Temporal worker SDK.
 */
import { ranksOnNode, trainNodes, type PoolLayout } from '../gpu/layout';
import { rankQueue, trainerQueue } from '../contract/naming';

/** The task queues a node's worker serves. */
export function nodeTaskQueues(layout: PoolLayout, prefix: string, node: number): string[] {
  const queues = ranksOnNode(layout, node).map((rank) => rankQueue(prefix, rank.id));
  if (trainNodes(layout).includes(node)) queues.push(trainerQueue(prefix, node));
  return queues;
}
