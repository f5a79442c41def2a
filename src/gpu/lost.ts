/**
 * Lost ranks: a gpu-node worker that does not come back within the lost-node timeout has its
 * ranks marked lost; the pool goes on smaller while the strategy still has what it needs, and
 * pauses with the reason otherwise. The operator returns the ranks once the node is back.
 * Pure: shared by the run and iteration workflows and the tests.
 */
import { trainNodes, type PoolLayout, type RankId } from './layout';
import { planShrink } from './planning';
import { checkIntRange, checkNoDuplicates, checkNonEmpty, checkSubset } from '../validation/patterns';

export type LostRankPlan =
  | { viable: true; release: RankId[]; keep: RankId[]; active: RankId[] }
  | { viable: false; reason: string };

function checkRanks(layout: PoolLayout, subject: string, ranks: readonly RankId[]): void {
  checkNoDuplicates(subject, ranks);
  for (const rank of ranks) checkIntRange(`${subject}: rank id`, rank, 0, layout.ranks.length - 1);
}

/**
 * The shrink plan over the ranks still in the pool, or why the strategy cannot go on without the
 * lost ones: every train GPU must be on a rank that is not lost (the train group is fixed), no
 * node that trains may be lost (one worker per node serves its ranks and its part of the trainer,
 * so a lost rank there means a lost trainer: the disaggregated case), some rank must roll out, and
 * a multiplexed pool must keep one rolling out during training.
 */
export function planWithLostRanks(layout: PoolLayout, lost: readonly RankId[], shrinkOverride?: readonly RankId[]): LostRankPlan {
  checkRanks(layout, 'lost ranks', lost);
  const lostSet = new Set(lost);
  const { release, keep } = planShrink(layout, shrinkOverride);
  const active = layout.ranks.map((rank) => rank.id).filter((rank) => !lostSet.has(rank));
  if (active.length === 0) return { viable: false, reason: 'every rollout rank is lost' };
  const lostTrain = layout.shrinkRanks.filter((rank) => lostSet.has(rank));
  if (lostTrain.length > 0) {
    return { viable: false, reason: `ranks ${lostTrain.join(',')} hold train GPUs and are lost: the ${layout.strategy} train group is incomplete` };
  }
  const trainingNodes = new Set(trainNodes(layout));
  const lostOnTrainNodes = lost.filter((rank) => trainingNodes.has(layout.ranks[rank]!.node));
  if (lostOnTrainNodes.length > 0) {
    return {
      viable: false,
      reason: `ranks ${lostOnTrainNodes.join(',')} are lost on a node that also trains: its worker serves the trainer too, so the ${layout.strategy} train group is incomplete`,
    };
  }
  const keepActive = keep.filter((rank) => !lostSet.has(rank));
  if (layout.strategy === 'multiplexed' && keepActive.length === 0) {
    return { viable: false, reason: 'no rank left to roll out during training (a multiplexed pool needs one)' };
  }
  return { viable: true, release: release.filter((rank) => !lostSet.has(rank)), keep: keepActive, active };
}

/** The lost set after `newly` lost ranks (ascending, no duplicates). */
export function addLostRanks(layout: PoolLayout, lost: readonly RankId[], newly: readonly RankId[]): RankId[] {
  checkRanks(layout, 'newly lost ranks', newly);
  return [...new Set([...lost, ...newly])].sort((a, b) => a - b);
}

/** The lost set after the operator returns `returning` (each must be lost). */
export function removeLostRanks(layout: PoolLayout, lost: readonly RankId[], returning: readonly RankId[]): RankId[] {
  checkNonEmpty('returned ranks', returning);
  checkRanks(layout, 'returned ranks', returning);
  checkSubset('returned ranks (only lost ranks can be returned)', returning, lost, { universeName: 'the lost ranks' });
  const back = new Set(returning);
  return lost.filter((rank) => !back.has(rank));
}
