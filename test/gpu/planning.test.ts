/** Planning: the shrink set, least-loaded placement and the affinity-keeping rebalance. */
import { describe, expect, it } from 'vitest';
import { assignLeastLoaded, buildLayout, planRebalance, planShrink, type Placement, type RankLoad } from '../../src/gpu';
import { COLOCATED, DISAGGREGATED, deepFreeze, expectValidation, MULTIPLEXED } from './helpers';

describe('planShrink: the default rule releases exactly the ranks overlapping the train group', () => {
  it('multiplexed', () => {
    expect(planShrink(buildLayout(MULTIPLEXED))).toEqual({ release: [0, 1], keep: [2, 3] });
    expect(planShrink(buildLayout({ ...MULTIPLEXED, trainGpus: [5] }))).toEqual({ release: [2], keep: [0, 1, 3] });
    expect(planShrink(buildLayout({ ...MULTIPLEXED, trainGpus: [1, 6] }))).toEqual({ release: [0, 3], keep: [1, 2] });
  });

  it('colocated releases every rank, disaggregated none', () => {
    expect(planShrink(buildLayout(COLOCATED))).toEqual({ release: [0, 1], keep: [] });
    expect(planShrink(buildLayout(DISAGGREGATED))).toEqual({ release: [], keep: [0, 1] });
  });

  it('returns fresh arrays: the plan does not alias the layout', () => {
    const layout = buildLayout(MULTIPLEXED);
    const plan = planShrink(layout);
    plan.release.push(3);
    expect(layout.shrinkRanks).toEqual([0, 1]);
  });
});

describe('planShrink: operator override', () => {
  const layout = deepFreeze(buildLayout(MULTIPLEXED)); // must release 0 and 1; 4 ranks

  it('a superset of the required ranks is accepted, sorted', () => {
    expect(planShrink(layout, [3, 1, 0])).toEqual({ release: [0, 1, 3], keep: [2] });
    expect(planShrink(layout, [0, 1])).toEqual({ release: [0, 1], keep: [2, 3] });
  });

  it('missing a required rank is refused, naming it', () => {
    const error = expectValidation(() => planShrink(layout, [0, 2]), 'VAL_SUBSET', 'ranks overlapping the train group', 'the requested shrink set');
    expect(error.offending).toBe('[1]');
    expectValidation(() => planShrink(layout, [2, 3]), 'VAL_SUBSET', 'ranks overlapping the train group', 'offending: [0,1]');
  });

  it('every rank of a multiplexed pool is refused: one must keep rolling out', () => {
    expectValidation(() => planShrink(layout, [3, 2, 1, 0]), 'VAL_NON_EMPTY', 'ranks that keep rolling out (multiplexed)', 'offending: [0,1,2,3]');
  });

  it('a disaggregated pool takes no override, not even an empty one', () => {
    const disaggregated = buildLayout(DISAGGREGATED);
    expectValidation(() => planShrink(disaggregated, [0]), 'VAL_SUBSET', 'shrink set (disaggregated', 'takes no shrink-set override', 'offending: [0]');
    expectValidation(() => planShrink(disaggregated, []), 'VAL_SUBSET', 'shrink set (disaggregated', 'offending: []');
  });

  it('colocated: the override must name every rank', () => {
    const colocated = buildLayout(COLOCATED);
    expect(planShrink(colocated, [1, 0])).toEqual({ release: [0, 1], keep: [] });
    expectValidation(() => planShrink(colocated, [0]), 'VAL_SUBSET', 'ranks overlapping the train group', 'offending: [1]');
  });

  it('empty, duplicate and unknown rank ids are refused', () => {
    expectValidation(() => planShrink(layout, []), 'VAL_NON_EMPTY', 'shrink set');
    expectValidation(() => planShrink(layout, [0, 1, 1]), 'VAL_NO_DUPLICATES', 'shrink set', 'offending: [1]');
    expectValidation(() => planShrink(layout, [0, 1, 4]), 'VAL_INT_RANGE', 'shrink set: rank id', 'offending: 4', '[0, 3]');
    expectValidation(() => planShrink(layout, [0, 1, -1]), 'VAL_INT_RANGE', 'shrink set: rank id', 'offending: -1');
  });
});

const loads = (...values: number[]): RankLoad[] => values.map((load, rank) => ({ rank, load }));

describe('assignLeastLoaded', () => {
  it('places each sample, in order, on the currently least-loaded rank, ties to the lowest rank id', () => {
    expect(assignLeastLoaded([10, 11, 12, 13, 14], loads(0, 0, 0))).toEqual([
      { rank: 0, sampleIds: [10, 13] },
      { rank: 1, sampleIds: [11, 14] },
      { rank: 2, sampleIds: [12] },
    ]);
    // Loads 5, 0, 2: rank 1 fills up to 2, then ties with rank 2 break towards rank 1.
    expect(assignLeastLoaded([1, 2, 3, 4], loads(5, 0, 2))).toEqual([
      { rank: 1, sampleIds: [1, 2, 3] },
      { rank: 2, sampleIds: [4] },
    ]);
  });

  it('is deterministic and independent of the order of the targets', () => {
    const targets: RankLoad[] = [
      { rank: 7, load: 1 },
      { rank: 2, load: 0 },
      { rank: 4, load: 0 },
    ];
    const ids = [5, 3, 9, 1, 8];
    const first = assignLeastLoaded(ids, targets);
    expect(assignLeastLoaded(ids, targets)).toEqual(first);
    expect(assignLeastLoaded(ids, [...targets].reverse())).toEqual(first);
    expect(first).toEqual([
      { rank: 2, sampleIds: [5, 9] },
      { rank: 4, sampleIds: [3, 1] },
      { rank: 7, sampleIds: [8] },
    ]);
  });

  it('ties go first to ranks freed by no completion, then in the order completions freed them', () => {
    // Ranks 0 and 2 freed a slot each, rank 2 first: rank 2 takes the first sample.
    expect(assignLeastLoaded([8, 9], loads(1, 2, 1, 2), [2, 0])).toEqual([
      { rank: 0, sampleIds: [9] },
      { rank: 2, sampleIds: [8] },
    ]);
    // Placed one completion at a time, the same: after rank 2's completion alone it is the least
    // loaded, then rank 0's completion leaves rank 0 the least loaded.
    expect(assignLeastLoaded([8], loads(2, 2, 1, 2), [2])).toEqual([{ rank: 2, sampleIds: [8] }]);
    expect(assignLeastLoaded([9], loads(1, 2, 2, 2), [2, 0])).toEqual([{ rank: 0, sampleIds: [9] }]);
    // Rank 1, as loaded but freed by no completion here, has been free the longest.
    expect(assignLeastLoaded([8, 9, 10], loads(2, 1, 1, 1), [3, 2])).toEqual([
      { rank: 1, sampleIds: [8] },
      { rank: 2, sampleIds: [10] },
      { rank: 3, sampleIds: [9] },
    ]);
    expectValidation(() => assignLeastLoaded([1], loads(0, 0), [1, 1]), 'VAL_NO_DUPLICATES', 'ranks in order freed', 'offending: [1]');
  });

  it('balances: equal loads end within 1 of each other, every sample placed once', () => {
    const placements = assignLeastLoaded(Array.from({ length: 23 }, (_, i) => i), loads(3, 3, 3, 3, 3));
    const counts = placements.map((p) => p.sampleIds.length);
    expect(counts).toEqual([5, 5, 5, 4, 4]);
    expect(placements.flatMap((p) => p.sampleIds).sort((a, b) => a - b)).toEqual(Array.from({ length: 23 }, (_, i) => i));
  });

  it('does not modify the loads it was given', () => {
    const given = deepFreeze(loads(0, 1));
    assignLeastLoaded([1, 2, 3], given);
    expect(given).toEqual(loads(0, 1));
  });

  it('places nothing for no samples, even with no targets', () => {
    expect(assignLeastLoaded([], [])).toEqual([]);
    expect(assignLeastLoaded([], loads(1, 2))).toEqual([]);
  });

  it('refuses no targets, duplicate targets, duplicate samples and bad loads', () => {
    expectValidation(() => assignLeastLoaded([1], []), 'VAL_NON_EMPTY', 're-shard targets');
    expectValidation(() => assignLeastLoaded([1], [{ rank: 3, load: 0 }, { rank: 3, load: 1 }]), 'VAL_NO_DUPLICATES', 're-shard targets', 'offending: [3]');
    expectValidation(() => assignLeastLoaded([1, 2, 1], loads(0)), 'VAL_NO_DUPLICATES', 'samples to place', 'offending: [1]');
    expectValidation(() => assignLeastLoaded([1], loads(0, -1)), 'VAL_INT_RANGE', 'load of rank 1', 'offending: -1');
    expectValidation(() => assignLeastLoaded([1], loads(0.5)), 'VAL_INT_RANGE', 'load of rank 0', 'expected an integer');
  });
});

describe('planRebalance', () => {
  it('keeps samples on their rank up to the capacity, the first ones first; the overflow goes least-loaded', () => {
    // 6 samples over 2 ranks: capacity 3. Rank 0 keeps 1, 2, 3; 4 and 5 move to rank 1.
    expect(planRebalance([{ rank: 0, sampleIds: [1, 2, 3, 4, 5] }, { rank: 1, sampleIds: [6] }], [], [0, 1])).toEqual([
      { rank: 0, sampleIds: [1, 2, 3] },
      { rank: 1, sampleIds: [6, 4, 5] },
    ]);
  });

  it('moves every sample off ranks not in the target set, and places the unplaced ones', () => {
    const result = planRebalance([{ rank: 2, sampleIds: [7, 8] }, { rank: 0, sampleIds: [1] }], [20, 21, 22], [0, 1]);
    expect(result).toEqual([
      { rank: 0, sampleIds: [1, 8, 21] },
      { rank: 1, sampleIds: [7, 20, 22] },
    ]);
  });

  it('expand: samples on the remaining ranks stay, the returned ranks fill up', () => {
    // Ranks 0 and 1 come back empty; ranks 2 and 3 carried the long tail.
    const current: Placement[] = [
      { rank: 2, sampleIds: [1, 2, 3, 4] },
      { rank: 3, sampleIds: [5, 6, 7, 8] },
    ];
    const result = planRebalance(current, [], [0, 1, 2, 3]);
    expect(result).toEqual([
      { rank: 0, sampleIds: [3, 7] },
      { rank: 1, sampleIds: [4, 8] },
      { rank: 2, sampleIds: [1, 2] },
      { rank: 3, sampleIds: [5, 6] },
    ]);
  });

  it('respects its capacity guarantee: no rank above ceil(total / ranks), and leaves out empty ranks', () => {
    const result = planRebalance([{ rank: 0, sampleIds: [1, 2, 3, 4, 5, 6, 7] }], [8], [0, 1, 2]);
    const capacity = Math.ceil(8 / 3);
    for (const placement of result) expect(placement.sampleIds.length).toBeLessThanOrEqual(capacity);
    expect(result.map((p) => [p.rank, p.sampleIds.length])).toEqual([
      [0, 3],
      [1, 3],
      [2, 2],
    ]);
    expect(planRebalance([{ rank: 1, sampleIds: [4] }], [], [0, 1, 2])).toEqual([{ rank: 1, sampleIds: [4] }]);
    expect(planRebalance([], [], [0])).toEqual([]);
  });

  it('does not modify its inputs', () => {
    const current = deepFreeze([{ rank: 0, sampleIds: [1, 2, 3] }] as Placement[]);
    const unplaced = deepFreeze([4]);
    planRebalance(current, unplaced, deepFreeze([0, 1]));
    expect(current).toEqual([{ rank: 0, sampleIds: [1, 2, 3] }]);
  });

  it('refuses empty or duplicate target ranks and samples in two places', () => {
    expectValidation(() => planRebalance([], [1], []), 'VAL_NON_EMPTY', 'rebalance ranks');
    expectValidation(() => planRebalance([], [1], [0, 0]), 'VAL_NO_DUPLICATES', 'rebalance ranks', 'offending: [0]');
    expectValidation(
      () => planRebalance([{ rank: 0, sampleIds: [1, 2] }, { rank: 1, sampleIds: [2] }], [], [0, 1]),
      'VAL_NO_DUPLICATES',
      'samples to rebalance',
      'offending: [2]',
    );
    expectValidation(() => planRebalance([{ rank: 0, sampleIds: [1] }], [1], [0]), 'VAL_NO_DUPLICATES', 'samples to rebalance', 'offending: [1]');
  });
});
