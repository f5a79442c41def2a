/** Unit tests of the pure core: the validation patterns, layout rules, transitions and ledger. */
import { describe, expect, it } from 'vitest';
import {
  admit,
  assignToShard,
  beginOffload,
  beginTraining,
  buildLayout,
  checkIntRange,
  checkNoDuplicates,
  checkNonEmpty,
  checkPostcondition,
  checkSubset,
  completeOffload,
  deviceAddress,
  drop,
  emptyLedger,
  initialPoolState,
  planShrink,
  roleCounts,
  sealBatch,
  selectBatch,
  settleShard,
  staleIds,
  ValidationError,
  type LayoutInput,
} from '../../src/gpu';

function expectValidation(fn: () => unknown, pattern: string, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ValidationError);
  const error = caught as ValidationError;
  expect(error.pattern).toBe(pattern);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
}

describe('validation patterns', () => {
  it('each names the pattern, the subject and the offending value', () => {
    expect(checkIntRange('x', 3, 1, 5)).toBe(3);
    expectValidation(() => checkIntRange('pool.nodes', 0, 1, 8), 'VAL_INT_RANGE', 'pool.nodes', '[1, 8]', 'offending: 0');
    expectValidation(() => checkIntRange('batch', 1.5, 1, 8), 'VAL_INT_RANGE', 'expected an integer');
    expectValidation(() => checkSubset('train.gpus', [1, 9], [0, 1, 2]), 'VAL_SUBSET', 'train.gpus', '[9]');
    expectValidation(() => checkSubset('train', [0, 1], [0, 1], { strict: true }), 'VAL_SUBSET', 'strict subset');
    expectValidation(() => checkNonEmpty('rollout.gpus', []), 'VAL_NON_EMPTY', 'rollout.gpus');
    expectValidation(() => checkNoDuplicates('ids', [1, 2, 2, 3, 3]), 'VAL_NO_DUPLICATES', '[2,3]');
    expectValidation(() => checkPostcondition('conservation', false, () => 'admitted 3, live 2'), 'AST_POSTCONDITION', 'conservation', 'admitted 3, live 2');
  });
});

const base: LayoutInput = {
  strategy: 'multiplexed',
  nodes: 2,
  gpusPerNode: 4,
  rolloutGpus: [0, 1, 2, 3, 4, 5, 6, 7],
  gpusPerRank: 2,
  trainGpus: [0, 1, 2],
  asyncRatio: 1,
};

describe('layout', () => {
  it('cuts ranks in GPU order on one node each and releases every rank touching the train group', () => {
    const layout = buildLayout(base);
    expect(layout.ranks.map((rank) => rank.gpus)).toEqual([[0, 1], [2, 3], [4, 5], [6, 7]]);
    expect(layout.ranks.map((rank) => rank.node)).toEqual([0, 0, 1, 1]);
    expect(layout.shrinkRanks).toEqual([0, 1]);
    expect(deviceAddress(layout, 6)).toEqual({ node: 1, localIndex: 2 });
    expect(planShrink(layout)).toEqual({ release: [0, 1], keep: [2, 3] });
  });

  it('refuses each broken strategy rule, naming the field', () => {
    expectValidation(() => buildLayout({ ...base, strategy: 'colocated', trainGpus: base.rolloutGpus }), 'VAL_INT_RANGE', 'asyncRatio');
    expectValidation(() => buildLayout({ ...base, strategy: 'colocated', trainGpus: [0, 1], asyncRatio: 0 }), 'VAL_SUBSET', 'rollout.gpus');
    expectValidation(() => buildLayout({ ...base, strategy: 'disaggregated', rolloutGpus: [0, 1, 2, 3], trainGpus: [3, 4] }), 'VAL_SUBSET', 'disjoint', '[3]');
    expectValidation(() => buildLayout({ ...base, trainGpus: base.rolloutGpus }), 'VAL_SUBSET', 'strict subset');
    expectValidation(() => buildLayout({ ...base, trainGpus: [0, 2, 4, 6] }), 'VAL_SUBSET', 'at least one rank must keep rolling out');
    expectValidation(() => buildLayout({ ...base, rolloutGpus: [2, 3, 4, 5], gpusPerRank: 4, trainGpus: [2] }), 'VAL_SUBSET', 'a rank must sit on one node');
    expectValidation(() => buildLayout({ ...base, rolloutGpus: [0, 1, 2] }), 'VAL_INT_RANGE', 'multiple of rollout.gpusPerRank');
    expectValidation(() => buildLayout({ ...base, trainGpus: [0, 12] }), 'VAL_SUBSET', 'train.gpus', '[12]');
    expectValidation(() => buildLayout({ ...base, rolloutGpus: [0, 0, 1, 2] }), 'VAL_NO_DUPLICATES', 'rollout.gpus');
    expectValidation(() => planShrink(buildLayout(base), [2, 3]), 'VAL_SUBSET', 'ranks overlapping the train group');
    expectValidation(() => planShrink(buildLayout(base), [0, 1, 2, 3]), 'VAL_NON_EMPTY', 'keep rolling out');
  });
});

describe('roles', () => {
  it('a wrong-order transition is refused, names the ranks, and changes nothing', () => {
    const layout = buildLayout(base);
    const state = initialPoolState(layout);
    const snapshot = structuredClone(state);
    expectValidation(() => beginTraining(layout, state), 'AST_POSTCONDITION', 'beginTraining', '"gpu":0', '"role":"rollout"');
    expectValidation(() => completeOffload(layout, state, [0]), 'AST_POSTCONDITION', 'completeOffload', '"rank":0', '"phase":"serving"');
    expectValidation(() => beginOffload(layout, state, [0, 0]), 'VAL_NO_DUPLICATES', 'beginOffload');
    expectValidation(() => beginOffload(layout, state, [7]), 'VAL_INT_RANGE', 'rank id');
    expect(state).toEqual(snapshot);

    const released = completeOffload(layout, beginOffload(layout, state, [0, 1]), [0, 1]);
    const training = beginTraining(layout, released);
    // GPU 3 belongs to released rank 1 but is not in the train group: idle, not training.
    expect(training.roles).toEqual(['training', 'training', 'training', 'idle', 'rollout', 'rollout', 'rollout', 'rollout']);
    expect(roleCounts(training)).toEqual({ rollout: 4, offloading: 0, training: 3, loading: 0, idle: 1, lost: 0 });
  });
});

describe('ledger', () => {
  it('tracks a sample through admit → shard → settle → batch, and refuses misplacements', () => {
    const admitted = admit(emptyLedger(), 4, 0);
    expect(admitted.ids).toEqual([0, 1, 2, 3]);
    let ledger = admitted.ledger;
    ledger = assignToShard(ledger, [0, 1, 2], 1, 's1');
    expectValidation(() => assignToShard(ledger, [0], 2, 's2'), 'VAL_SUBSET', '"id":0', '"state":"running"');
    expectValidation(() => assignToShard(ledger, [3], 2, 's1'), 'VAL_NO_DUPLICATES', 'shard id');
    expectValidation(() => settleShard(ledger, 's1', [3]), 'VAL_SUBSET', '[3]', 'not running on this shard');
    expectValidation(() => drop(ledger, [0], 'stale'), 'VAL_SUBSET', '"state":"running"');
    ledger = sealBatch(ledger, [0]);
    ledger = settleShard(ledger, 's1', [2]);
    expect(settleShard(ledger, 's1', [])).toEqual(ledger);
    expect(ledger.live.map((s) => [s.id, s.state])).toEqual([
      [1, 'completed'],
      [2, 'waiting'],
      [3, 'waiting'],
    ]);
    expectValidation(() => sealBatch(ledger, [2]), 'VAL_SUBSET', '"state":"waiting"');
    expect(staleIds(ledger, 2, 1)).toEqual([1, 2, 3]);
    expect(staleIds(ledger, 1, 1)).toEqual([]);
  });

  it('selects the batch oldest policy version first, then by completion order', () => {
    let { ledger } = admit(emptyLedger(), 2, 0);
    ledger = admit(ledger, 2, 1).ledger;
    ledger = assignToShard(ledger, [0, 1, 2, 3], 0, 's');
    ledger = settleShard(ledger, 's', []);
    expect(selectBatch(ledger, [3, 1, 2, 0], 3)).toEqual([1, 0, 3]);
    expectValidation(() => selectBatch(ledger, [3], 2), 'VAL_INT_RANGE', 'fewer than the batch size');
  });
});
