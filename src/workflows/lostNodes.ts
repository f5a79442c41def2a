/**
 * Lost-node detection in the iteration workflow: a rank or trainer activity that no worker picked
 * up within the lost-node timeout (schedule-to-start) marks every rank of its node lost.
 */
import { ActivityFailure, TimeoutFailure } from '@temporalio/workflow';
import { TimeoutType } from '@temporalio/common';
import { rankById, ranksOnNode, type PoolLayout, type RankId } from '../gpu/layout';

export function isLostNodeError(error: unknown): boolean {
  return error instanceof ActivityFailure && error.cause instanceof TimeoutFailure && error.cause.timeoutType === TimeoutType.SCHEDULE_TO_START;
}

export class LostNodes {
  /** Ranks found lost during this attempt. */
  readonly ranks = new Set<RankId>();
  trainerNode: number | undefined;

  constructor(private readonly layout: PoolLayout) {}

  onRank<T>(rank: RankId, call: Promise<T>): Promise<T> {
    return call.catch((error: unknown) => {
      this.noteRankFailure(rank, error);
      throw error;
    });
  }

  /** Marks the rank's node lost if the error says so (for a caller that handles the failure itself). */
  noteRankFailure(rank: RankId, error: unknown): void {
    if (isLostNodeError(error)) this.markNode(rankById(this.layout, rank).node);
  }

  onTrainerNode<T>(node: number, call: Promise<T>): Promise<T> {
    return call.catch((error: unknown) => {
      if (isLostNodeError(error)) {
        this.trainerNode = node;
        this.markNode(node);
      }
      throw error;
    });
  }

  private markNode(node: number): void {
    for (const rank of ranksOnNode(this.layout, node)) this.ranks.add(rank.id);
  }
}
