/**
 * Planning, pure and deterministic: which ranks shrink releases, and where samples go when they
 * are admitted, moved off released ranks, or rebalanced at expand. Ties always break towards the
 * lowest rank id, so a replayed workflow plans exactly as it did the first time.
 */
import type { PoolLayout, RankId } from './layout';
import { checkIntRange, checkNoDuplicates, checkNonEmpty, checkPostcondition, checkSubset, ValidationError } from '../validation/patterns';

export interface ShrinkPlan {
  /** Ranks released for training (ascending). */
  release: RankId[];
  /** Ranks that keep rolling out (ascending). */
  keep: RankId[];
}

/**
 * The stated rule: release exactly the ranks that overlap the train group (`layout.shrinkRanks`),
 * as ROLL does — a rank cannot serve on part of its GPUs. An operator may release more ranks
 * (`requestedRelease` must include every overlapping rank); a multiplexed pool must keep at least
 * one rank rolling out. Disaggregated pools release nothing and take no override.
 */
export function planShrink(layout: PoolLayout, requestedRelease?: readonly RankId[]): ShrinkPlan {
  const all = layout.ranks.map((rank) => rank.id);
  let release: RankId[];
  if (requestedRelease === undefined) {
    release = [...layout.shrinkRanks];
  } else {
    if (layout.strategy === 'disaggregated') {
      throw new ValidationError(
        'VAL_SUBSET',
        'shrink set (disaggregated: training has its own GPUs, no rank is released)',
        JSON.stringify(requestedRelease),
        'a disaggregated pool takes no shrink-set override',
      );
    }
    checkNonEmpty('shrink set', requestedRelease);
    checkNoDuplicates('shrink set', requestedRelease);
    for (const rank of requestedRelease) checkIntRange('shrink set: rank id', rank, 0, all.length - 1);
    checkSubset('ranks overlapping the train group (a shrink set must release every one)', layout.shrinkRanks, requestedRelease, { universeName: 'the requested shrink set' });
    release = [...requestedRelease].sort((a, b) => a - b);
  }
  const released = new Set(release);
  const keep = all.filter((rank) => !released.has(rank));
  if (layout.strategy === 'multiplexed' && keep.length === 0) {
    throw new ValidationError(
      'VAL_NON_EMPTY',
      'ranks that keep rolling out (multiplexed)',
      JSON.stringify(release),
      'a multiplexed pool must keep at least one rank rolling out during training',
    );
  }
  checkPostcondition('shrink plan partitions the ranks', release.length + keep.length === all.length, () => JSON.stringify({ release, keep }));
  return { release, keep };
}

export interface RankLoad {
  rank: RankId;
  /** Samples currently running on the rank. */
  load: number;
}

export interface Placement {
  rank: RankId;
  sampleIds: number[];
}

/**
 * Places each sample on the currently least-loaded target, in order. Ties go to the target freed
 * earliest: targets not in `freedOrder` first (lowest rank id first), then in `freedOrder`'s
 * order (the ranks whose samples completed, in completion order). So placing completions' slots
 * one by one or all at once fills them alike: the decision does not hang on how many completions
 * the control plane had seen when it placed. Returns one placement per target that received
 * samples, ascending by rank.
 */
export function assignLeastLoaded(sampleIds: readonly number[], loads: readonly RankLoad[], freedOrder: readonly RankId[] = []): Placement[] {
  if (sampleIds.length === 0) return [];
  checkNonEmpty('re-shard targets', loads);
  checkNoDuplicates('re-shard targets', loads, (load) => load.rank);
  checkNoDuplicates('samples to place', sampleIds);
  checkNoDuplicates('ranks in order freed', freedOrder);
  for (const { rank, load } of loads) checkIntRange(`load of rank ${rank}`, load, 0, Number.MAX_SAFE_INTEGER);

  const freedAt = new Map(freedOrder.map((rank, i) => [rank, i]));
  const tieRank = (rank: RankId): number => freedAt.get(rank) ?? -1;
  const current = loads.map((entry) => ({ ...entry })).sort((a, b) => tieRank(a.rank) - tieRank(b.rank) || a.rank - b.rank);
  const placed = new Map<RankId, number[]>();
  for (const id of sampleIds) {
    let target = current[0]!;
    for (const candidate of current) if (candidate.load < target.load) target = candidate;
    target.load += 1;
    placed.set(target.rank, [...(placed.get(target.rank) ?? []), id]);
  }
  const placements = [...placed.entries()].map(([rank, ids]) => ({ rank, sampleIds: ids })).sort((a, b) => a.rank - b.rank);
  checkPostcondition('every sample placed exactly once', placements.reduce((n, p) => n + p.sampleIds.length, 0) === sampleIds.length, () =>
    JSON.stringify(placements),
  );
  return placements;
}

/**
 * Rebalances samples over `ranks` while keeping prefix-cache affinity where possible: a sample
 * stays on its current rank while that rank holds at most ceil(total / ranks) samples; the
 * overflow, samples on ranks not in `ranks`, and `unplaced` go least-loaded.
 *
 * Guarantee: every input sample is placed exactly once, on a rank in `ranks`, and no rank ends
 * above ceil(total / ranks.length).
 */
export function planRebalance(current: readonly Placement[], unplaced: readonly number[], ranks: readonly RankId[]): Placement[] {
  checkNonEmpty('rebalance ranks', ranks);
  checkNoDuplicates('rebalance ranks', ranks);
  const all = [...current.flatMap((placement) => placement.sampleIds), ...unplaced];
  checkNoDuplicates('samples to rebalance', all);
  const capacity = Math.ceil(all.length / ranks.length);
  const targets = new Set(ranks);
  const kept = new Map<RankId, number[]>(ranks.map((rank) => [rank, []]));
  const moving: number[] = [];
  for (const placement of [...current].sort((a, b) => a.rank - b.rank)) {
    if (!targets.has(placement.rank)) {
      moving.push(...placement.sampleIds);
      continue;
    }
    const stay = placement.sampleIds.slice(0, capacity);
    kept.get(placement.rank)!.push(...stay);
    moving.push(...placement.sampleIds.slice(capacity));
  }
  moving.push(...unplaced);
  const moved = assignLeastLoaded(moving, ranks.map((rank) => ({ rank, load: kept.get(rank)!.length })));
  for (const { rank, sampleIds } of moved) kept.get(rank)!.push(...sampleIds);
  const result = [...kept.entries()].filter(([, ids]) => ids.length > 0).map(([rank, sampleIds]) => ({ rank, sampleIds }));
  checkPostcondition('rebalance places every sample exactly once', result.reduce((n, p) => n + p.sampleIds.length, 0) === all.length, () =>
    JSON.stringify(result),
  );
  checkPostcondition('rebalance respects the per-rank capacity', result.every((p) => p.sampleIds.length <= capacity), () =>
    JSON.stringify({ capacity, loads: result.map((p) => [p.rank, p.sampleIds.length]) }),
  );
  return result.sort((a, b) => a.rank - b.rank);
}
