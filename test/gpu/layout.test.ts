/** buildLayout's strategy rules (docs/design.md §5) and the layout helpers. */
import { describe, expect, it } from 'vitest';
import {
  buildLayout,
  deviceAddress,
  MAX_GPUS,
  rankById,
  ranksOnNode,
  remainingRanks,
  totalGpus,
  trainNodes,
  type LayoutInput,
} from '../../src/gpu';
import { COLOCATED, DISAGGREGATED, deepFreeze, expectValidation, MULTIPLEXED, range } from './helpers';

describe('buildLayout: valid layouts', () => {
  it('multiplexed: ranks cut in GPU order, one node each; shrink releases the ranks touching the train group', () => {
    const layout = buildLayout(MULTIPLEXED);
    expect(layout.strategy).toBe('multiplexed');
    expect(layout.ranks).toEqual([
      { id: 0, node: 0, gpus: [0, 1] },
      { id: 1, node: 0, gpus: [2, 3] },
      { id: 2, node: 1, gpus: [4, 5] },
      { id: 3, node: 1, gpus: [6, 7] },
    ]);
    expect(layout.trainGpus).toEqual([0, 1, 2]);
    expect(layout.shrinkRanks).toEqual([0, 1]);
    expect(remainingRanks(layout)).toEqual([2, 3]);
    expect(totalGpus(layout)).toBe(8);
  });

  it('colocated: every rank is released, none remains', () => {
    const layout = buildLayout(COLOCATED);
    expect(layout.ranks.map((rank) => rank.gpus)).toEqual([
      [0, 1],
      [2, 3],
    ]);
    expect(layout.shrinkRanks).toEqual([0, 1]);
    expect(remainingRanks(layout)).toEqual([]);
  });

  it('colocated on part of the pool: train = rollout, the other GPUs belong to no rank', () => {
    const layout = buildLayout({ ...COLOCATED, nodes: 2, rolloutGpus: [4, 5, 6, 7], trainGpus: [7, 6, 5, 4] });
    expect(layout.ranks.map((rank) => [rank.node, rank.gpus])).toEqual([
      [1, [4, 5]],
      [1, [6, 7]],
    ]);
    expect(layout.trainGpus).toEqual([4, 5, 6, 7]);
    expect(layout.shrinkRanks).toEqual([0, 1]);
  });

  it('disaggregated: nothing is released, every rank remains', () => {
    const layout = buildLayout(DISAGGREGATED);
    expect(layout.ranks.map((rank) => rank.gpus)).toEqual([
      [0, 1],
      [2, 3],
    ]);
    expect(layout.trainGpus).toEqual([4, 5, 6, 7]);
    expect(layout.shrinkRanks).toEqual([]);
    expect(remainingRanks(layout)).toEqual([0, 1]);
  });

  it('disaggregated may leave GPUs in neither group, and take any async ratio', () => {
    const layout = buildLayout({ ...DISAGGREGATED, rolloutGpus: [0, 1], trainGpus: [6], asyncRatio: 3 });
    expect(layout.ranks).toEqual([{ id: 0, node: 0, gpus: [0, 1] }]);
    expect(layout.trainGpus).toEqual([6]);
  });

  it('sorts rollout and train GPUs given in any order, and does not modify its input', () => {
    const input = deepFreeze({ ...MULTIPLEXED, rolloutGpus: [7, 3, 5, 1, 0, 2, 6, 4], trainGpus: [2, 0, 1] });
    const layout = buildLayout(input);
    expect(layout.ranks.map((rank) => rank.gpus)).toEqual([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
    ]);
    expect(layout.trainGpus).toEqual([0, 1, 2]);
    expect(input.rolloutGpus).toEqual([7, 3, 5, 1, 0, 2, 6, 4]);
  });

  it('cuts ranks from non-contiguous rollout GPUs as long as each stays on one node', () => {
    const layout = buildLayout({ ...MULTIPLEXED, rolloutGpus: [0, 2, 5, 7], trainGpus: [0] });
    expect(layout.ranks.map((rank) => [rank.node, rank.gpus])).toEqual([
      [0, [0, 2]],
      [1, [5, 7]],
    ]);
    expect(layout.shrinkRanks).toEqual([0]);
  });

  it('one GPU per rank, one GPU per node, and the bounds of the pool size', () => {
    const single = buildLayout({ strategy: 'colocated', nodes: 1, gpusPerNode: 1, rolloutGpus: [0], gpusPerRank: 1, trainGpus: [0], asyncRatio: 0 });
    expect(single.ranks).toEqual([{ id: 0, node: 0, gpus: [0] }]);
    const wide = buildLayout({ strategy: 'multiplexed', nodes: 3, gpusPerNode: 1, rolloutGpus: [0, 1, 2], gpusPerRank: 1, trainGpus: [1], asyncRatio: 2 });
    expect(wide.ranks.map((rank) => rank.node)).toEqual([0, 1, 2]);
    expect(wide.shrinkRanks).toEqual([1]);
    const largest = buildLayout({ strategy: 'disaggregated', nodes: MAX_GPUS / 64, gpusPerNode: 64, rolloutGpus: [0], gpusPerRank: 1, trainGpus: [MAX_GPUS - 1], asyncRatio: 1 });
    expect(totalGpus(largest)).toBe(MAX_GPUS);
  });
});

describe('buildLayout: shrinkRanks are exactly the ranks overlapping the train group', () => {
  const cases: { train: number[]; gpusPerRank: number; expected: number[] }[] = [
    { train: [3], gpusPerRank: 2, expected: [1] },
    { train: [1, 2], gpusPerRank: 2, expected: [0, 1] }, // straddles two ranks
    { train: [0, 1, 2, 3], gpusPerRank: 2, expected: [0, 1] },
    { train: [1, 6], gpusPerRank: 2, expected: [0, 3] },
    { train: [7], gpusPerRank: 4, expected: [1] },
    { train: [0, 1, 2, 3, 4, 5, 6], gpusPerRank: 1, expected: [0, 1, 2, 3, 4, 5, 6] },
  ];
  for (const { train, gpusPerRank, expected } of cases) {
    it(`train ${JSON.stringify(train)}, ranks of ${gpusPerRank} → ${JSON.stringify(expected)}`, () => {
      const layout = buildLayout({ ...MULTIPLEXED, gpusPerRank, trainGpus: train });
      expect(layout.shrinkRanks).toEqual(expected);
      const trainSet = new Set(train);
      const overlapping = layout.ranks.filter((rank) => rank.gpus.some((gpu) => trainSet.has(gpu))).map((rank) => rank.id);
      expect(layout.shrinkRanks).toEqual(overlapping);
      expect([...layout.shrinkRanks, ...remainingRanks(layout)].sort((a, b) => a - b)).toEqual(range(layout.ranks.length));
    });
  }
});

describe('buildLayout: each rule violated is refused, naming the field', () => {
  it('colocated with an async ratio other than 0', () => {
    expectValidation(() => buildLayout({ ...COLOCATED, asyncRatio: 1 }), 'VAL_INT_RANGE', 'asyncRatio (colocated', 'offending: 1', '[0, 0]');
  });

  it('colocated with train ≠ rollout, either way round', () => {
    // train ⊂ rollout: rollout has GPUs that do not train.
    expectValidation(
      () => buildLayout({ ...COLOCATED, trainGpus: [0, 1] }),
      'VAL_SUBSET',
      'rollout.gpus (colocated: must equal train.gpus)',
      'offending: [2,3]',
    );
    // train ⊄ rollout: a train GPU does not roll out.
    expectValidation(
      () => buildLayout({ ...COLOCATED, nodes: 2, rolloutGpus: [0, 1], trainGpus: [0, 1, 5] }),
      'VAL_SUBSET',
      'train.gpus (colocated: must equal rollout.gpus)',
      'offending: [5]',
    );
  });

  it('disaggregated with train and rollout overlapping, naming the shared GPUs', () => {
    const error = expectValidation(
      () => buildLayout({ ...DISAGGREGATED, trainGpus: [3, 4, 1] }),
      'VAL_SUBSET',
      'train.gpus (disaggregated: must be disjoint from rollout.gpus)',
      'in both train.gpus and rollout.gpus',
    );
    expect(error.offending).toBe('[1,3]');
  });

  it('multiplexed with train = all rollout GPUs', () => {
    expectValidation(
      () => buildLayout({ ...MULTIPLEXED, trainGpus: range(8) }),
      'VAL_SUBSET',
      'train.gpus (multiplexed: must be a strict subset of rollout.gpus)',
      'strict subset',
    );
  });

  it('multiplexed with a train GPU outside the rollout GPUs', () => {
    expectValidation(
      () => buildLayout({ ...MULTIPLEXED, rolloutGpus: range(4), trainGpus: [0, 6] }),
      'VAL_SUBSET',
      'train.gpus (multiplexed',
      'offending: [6]',
    );
  });

  it('multiplexed where every rank touches the train group', () => {
    const error = expectValidation(
      () => buildLayout({ ...MULTIPLEXED, trainGpus: [6, 0, 2, 4] }),
      'VAL_SUBSET',
      'train.gpus (multiplexed: at least one rank must keep rolling out)',
      'every rollout rank has a GPU in the train group',
      'ranks are 2 GPUs wide',
    );
    expect(error.offending).toBe('[0,2,4,6]');
    // Wider ranks: one train GPU per rank is enough to leave none.
    expectValidation(() => buildLayout({ ...MULTIPLEXED, gpusPerRank: 4, trainGpus: [3, 4] }), 'VAL_SUBSET', 'at least one rank must keep rolling out');
  });

  it('a rank spanning two nodes, naming the rank and its GPUs', () => {
    expectValidation(
      () => buildLayout({ ...MULTIPLEXED, rolloutGpus: [2, 3, 4, 5], gpusPerRank: 4, trainGpus: [2] }),
      'VAL_SUBSET',
      'rollout rank 0',
      'a rank must sit on one node',
      'offending: [2,3,4,5]',
    );
    expectValidation(
      () => buildLayout({ ...MULTIPLEXED, rolloutGpus: [0, 1, 3, 4, 6, 7], trainGpus: [0] }),
      'VAL_SUBSET',
      'rollout rank 1',
      'offending: [3,4]',
    );
    expectValidation(
      () => buildLayout({ ...DISAGGREGATED, nodes: 2, gpusPerNode: 2, rolloutGpus: [1, 2], gpusPerRank: 2, trainGpus: [0] }),
      'VAL_SUBSET',
      'rollout rank 0',
    );
  });

  it('a rollout GPU count that is not a multiple of gpusPerRank', () => {
    const error = expectValidation(
      () => buildLayout({ ...MULTIPLEXED, rolloutGpus: [0, 1, 2, 3, 4] }),
      'VAL_INT_RANGE',
      'rollout.gpus',
      'multiple of rollout.gpusPerRank (2)',
    );
    expect(error.offending).toBe('5');
  });

  it('GPU ids outside the pool', () => {
    expectValidation(() => buildLayout({ ...MULTIPLEXED, rolloutGpus: [0, 1, 8, 9] }), 'VAL_SUBSET', 'rollout.gpus', "the pool's GPUs 0..7", 'offending: [8,9]');
    expectValidation(() => buildLayout({ ...MULTIPLEXED, trainGpus: [0, 12] }), 'VAL_SUBSET', 'train.gpus', "the pool's GPUs 0..7", 'offending: [12]');
    expectValidation(() => buildLayout({ ...MULTIPLEXED, trainGpus: [-1] }), 'VAL_SUBSET', 'train.gpus', 'offending: [-1]');
    expectValidation(() => buildLayout({ ...MULTIPLEXED, rolloutGpus: [0, 1.5] }), 'VAL_SUBSET', 'rollout.gpus', 'offending: [1.5]');
  });

  it('duplicate GPU ids', () => {
    expectValidation(() => buildLayout({ ...MULTIPLEXED, rolloutGpus: [0, 0, 1, 2] }), 'VAL_NO_DUPLICATES', 'rollout.gpus', 'offending: [0]');
    expectValidation(() => buildLayout({ ...MULTIPLEXED, trainGpus: [2, 1, 2] }), 'VAL_NO_DUPLICATES', 'train.gpus', 'offending: [2]');
  });

  it('empty rollout or train groups', () => {
    expectValidation(() => buildLayout({ ...MULTIPLEXED, rolloutGpus: [] }), 'VAL_NON_EMPTY', 'rollout.gpus');
    expectValidation(() => buildLayout({ ...DISAGGREGATED, trainGpus: [] }), 'VAL_NON_EMPTY', 'train.gpus');
  });

  it('pool and rank sizes out of range', () => {
    const cases: [Partial<LayoutInput>, string, string][] = [
      [{ nodes: 0 }, 'pool.nodes', 'offending: 0'],
      [{ nodes: 1.5 }, 'pool.nodes', 'expected an integer'],
      [{ gpusPerNode: 0 }, 'pool.gpusPerNode', 'offending: 0'],
      [{ gpusPerNode: 65 }, 'pool.gpusPerNode', '[1, 64]'],
      [{ nodes: MAX_GPUS, gpusPerNode: 2 }, 'pool size', `offending: ${MAX_GPUS * 2}`],
      [{ gpusPerRank: 0 }, 'rollout.gpusPerRank', 'offending: 0'],
      [{ gpusPerRank: 8 }, 'rollout.gpusPerRank', '[1, 4]'],
    ];
    for (const [override, subject, fragment] of cases) {
      expectValidation(() => buildLayout({ ...MULTIPLEXED, ...override }), 'VAL_INT_RANGE', subject, fragment);
    }
  });
});

describe('device mapping and node queries', () => {
  const layout = buildLayout(MULTIPLEXED);

  it('maps each global GPU id to (node, local CUDA index) and back', () => {
    expect(deviceAddress(layout, 0)).toEqual({ node: 0, localIndex: 0 });
    expect(deviceAddress(layout, 3)).toEqual({ node: 0, localIndex: 3 });
    expect(deviceAddress(layout, 4)).toEqual({ node: 1, localIndex: 0 });
    expect(deviceAddress(layout, 6)).toEqual({ node: 1, localIndex: 2 });
    const pool = { nodes: 3, gpusPerNode: 8 };
    for (const gpu of range(24)) {
      const { node, localIndex } = deviceAddress(pool, gpu);
      expect(localIndex).toBeGreaterThanOrEqual(0);
      expect(localIndex).toBeLessThan(8);
      expect(node * 8 + localIndex).toBe(gpu);
    }
  });

  it('refuses GPU ids outside the pool', () => {
    expectValidation(() => deviceAddress(layout, 8), 'VAL_INT_RANGE', 'gpu id', '[0, 7]', 'offending: 8');
    expectValidation(() => deviceAddress(layout, -1), 'VAL_INT_RANGE', 'gpu id', 'offending: -1');
    expectValidation(() => deviceAddress(layout, 0.5), 'VAL_INT_RANGE', 'gpu id', 'expected an integer');
  });

  it('ranksOnNode and trainNodes', () => {
    expect(ranksOnNode(layout, 0).map((rank) => rank.id)).toEqual([0, 1]);
    expect(ranksOnNode(layout, 1).map((rank) => rank.id)).toEqual([2, 3]);
    expect(ranksOnNode(layout, 2)).toEqual([]);
    expect(trainNodes(layout)).toEqual([0]);
    expect(trainNodes(buildLayout({ ...MULTIPLEXED, trainGpus: [7, 0, 1] }))).toEqual([0, 1]);
    expect(trainNodes(buildLayout(DISAGGREGATED))).toEqual([1]);
  });

  it('rankById finds ranks by id and refuses unknown ones', () => {
    expect(rankById(layout, 2)).toEqual({ id: 2, node: 1, gpus: [4, 5] });
    for (const id of [-1, 4, 1.5]) expectValidation(() => rankById(layout, id), 'VAL_INT_RANGE', 'rank id', `offending: ${id}`, 'pool has 4');
  });
});
