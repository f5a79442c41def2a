import { describe, expect, it } from 'vitest';
import { expectIssues, parse, withKeys } from './helpers';

const pool8 = { pool: { nodes: 1, gpusPerNode: 8 } };

describe('strategy rules', () => {
  it('colocated requires asyncRatio 0', () => {
    expectIssues(withKeys({ ...pool8, strategy: 'colocated', train: { gpus: 'all' }, asyncRatio: 1 }), [
      { path: 'asyncRatio', message: ['colocated', 'expected an integer in [0, 0]', '(got 1)', 'VAL_INT_RANGE'] },
    ]);
  });

  it('colocated requires train.gpus == rollout.gpus', () => {
    expectIssues(withKeys({ ...pool8, strategy: 'colocated', train: { gpus: '0-3' }, asyncRatio: 0 }), [
      { path: 'rollout.gpus', message: ['colocated: must equal train.gpus', '[4,5,6,7]', 'VAL_SUBSET'] },
    ]);
    expectIssues(withKeys({ ...pool8, strategy: 'colocated', rollout: { gpus: '0-3' }, train: { gpus: 'all' }, asyncRatio: 0 }), [
      { path: 'train.gpus', message: ['colocated: must equal rollout.gpus', '[4,5,6,7]', 'VAL_SUBSET'] },
    ]);
  });

  it('disaggregated rejects overlapping train and rollout GPUs', () => {
    expectIssues(withKeys({ ...pool8, strategy: 'disaggregated', rollout: { gpus: '0-5' }, train: { gpus: '4-7' } }), [
      { path: 'train.gpus', message: ['disaggregated: must be disjoint from rollout.gpus', 'in both train.gpus and rollout.gpus', '(got [4,5])', 'VAL_SUBSET'] },
    ]);
  });

  it('multiplexed rejects train = all rollout GPUs', () => {
    expectIssues(withKeys({ ...pool8, strategy: 'multiplexed', train: { gpus: 'all' } }), [
      { path: 'train.gpus', message: ['multiplexed: must be a strict subset of rollout.gpus', 'VAL_SUBSET'] },
    ]);
  });

  it('multiplexed rejects train GPUs outside the rollout GPUs', () => {
    expectIssues(withKeys({ ...pool8, strategy: 'multiplexed', rollout: { gpus: '0-5' }, train: { gpus: '4-7' } }), [
      { path: 'train.gpus', message: ['multiplexed: must be a strict subset of rollout.gpus', 'not all elements are in rollout.gpus', '[6,7]'] },
    ]);
  });

  it('multiplexed rejects a train group that touches every rank', () => {
    // Ranks of 4 GPUs: [0-3] and [4-7]; train GPUs 2-5 touch both, so nothing keeps rolling out.
    expectIssues(withKeys({ ...pool8, strategy: 'multiplexed', rollout: { gpusPerRank: 4 }, train: { gpus: '2-5' } }), [
      { path: 'train.gpus', message: ['at least one rank must keep rolling out', 'every rollout rank has a GPU in the train group', '(got [2,3,4,5])'] },
    ]);
    // The same train group with ranks of 2 GPUs leaves ranks 0 and 3 rolling out.
    const { layout } = parse(withKeys({ ...pool8, strategy: 'multiplexed', rollout: { gpusPerRank: 2 }, train: { gpus: '2-5' } }));
    expect(layout.shrinkRanks).toEqual([1, 2]);
  });
});

describe('GPU mapping', () => {
  it('a rank spanning two nodes is rejected', () => {
    expectIssues(
      withKeys({ pool: { nodes: 2, gpusPerNode: 8 }, strategy: 'disaggregated', rollout: { gpus: '4-11', gpusPerRank: 8 }, train: { gpus: '12-15' } }),
      [{ path: 'rollout.gpus', message: ['rollout rank 0', 'a rank must sit on one node', '(got [4,5,6,7,8,9,10,11])'] }],
    );
  });

  it('rollout GPUs not a multiple of gpusPerRank', () => {
    expectIssues(withKeys({ ...pool8, rollout: { gpus: '0-5', gpusPerRank: 4 }, train: { gpus: '0-3' } }), [
      { path: 'rollout.gpus', message: ['must be a multiple of rollout.gpusPerRank = 4', '(got 6 GPUs)'] },
    ]);
  });

  it('gpusPerRank larger than a node', () => {
    expectIssues(withKeys({ ...pool8, rollout: { gpusPerRank: 16 } }), [
      { path: 'rollout.gpusPerRank', message: ['a rank must fit on one node', 'pool.gpusPerNode = 8', '(got 16)'] },
    ]);
  });

  it('GPU ids outside the pool name the field (and the index for arrays)', () => {
    expectIssues(withKeys({ ...pool8, train: { gpus: [0, 1, 9] } }), [
      { path: 'train.gpus[2]', message: ['GPU 9 is outside the pool', 'GPUs 0..7', '(got 9)'] },
    ]);
    expectIssues(withKeys({ ...pool8, strategy: 'disaggregated', rollout: { gpus: '0-5' }, train: { gpus: '6-8' } }), [
      { path: 'train.gpus', message: ['GPU 8 is outside the pool', 'GPUs 0..7', '(got "6-8")'] },
    ]);
    expectIssues(withKeys({ ...pool8, rollout: { gpus: [0, 1, 2, 3, 20, 21] } }), [
      { path: 'rollout.gpus[4]', message: ['GPU 20 is outside the pool'] },
      { path: 'rollout.gpus[5]', message: ['GPU 21 is outside the pool'] },
    ]);
  });

  it('a pool larger than the GPU limit names pool', () => {
    expectIssues(withKeys({ pool: { nodes: 4096, gpusPerNode: 64 } }), [
      { path: 'pool', message: ['pool size (nodes × gpusPerNode)', 'expected an integer in [1, 65536]', '(got 262144)'] },
    ]);
  });

  it('a rank maps onto its node', () => {
    const { layout } = parse(withKeys({ pool: { nodes: 2, gpusPerNode: 4 }, rollout: { gpusPerRank: 2 }, train: { gpus: '0-1' } }));
    expect(layout.ranks).toEqual([
      { id: 0, node: 0, gpus: [0, 1] },
      { id: 1, node: 0, gpus: [2, 3] },
      { id: 2, node: 1, gpus: [4, 5] },
      { id: 3, node: 1, gpus: [6, 7] },
    ]);
  });
});

/** The trainer and environment real rollout engines need (checked separately in schema.test.ts). */
const realPeers = { trainer: { kind: 'http', endpoint: 'http://t:1' }, environment: { kind: 'digits' } };

describe('checks after the layout', () => {
  it('endpoint count must equal the number of rollout ranks', () => {
    expectIssues(withKeys({ ...pool8, engine: { ...realPeers, rollout: { kind: 'sglang', endpoints: ['http://a:1', 'http://a:2'] } } }), [
      { path: 'engine.rollout.endpoints', message: ['expected one endpoint per rollout rank', '8 ranks', '(got 2 endpoints)'] },
    ]);
    expectIssues(
      withKeys({
        ...pool8,
        rollout: { gpusPerRank: 4 },
        train: { gpus: '0-3' },
        engine: { ...realPeers, rollout: { kind: 'vllm', model: 'm', endpoints: ['http://a:1', 'http://a:2', 'http://a:3'] } },
      }),
      [{ path: 'engine.rollout.endpoints', message: ['2 ranks', '(got 3 endpoints)'] }],
    );
  });

  it('maxConcurrentSamples must let a batch fill', () => {
    expectIssues(withKeys({ rollout: { maxConcurrentSamples: 15 } }), [
      { path: 'rollout.maxConcurrentSamples', message: ['must be >= batchSize = 16', 'a batch can never fill', '(got 15)'] },
    ]);
    expect(parse(withKeys({ rollout: { maxConcurrentSamples: 16 } })).maxConcurrentSamples).toBe(16);
  });

  it('mapping issues found before the layout are all listed together', () => {
    expectIssues(withKeys({ ...pool8, rollout: { gpus: [0, 9], maxConcurrentSamples: 1 }, train: { gpus: '10-11' } }), [
      { path: 'rollout.gpus[1]', message: ['GPU 9 is outside the pool'] },
      { path: 'train.gpus', message: ['GPUs 10, 11 are outside the pool', '(got "10-11")'] },
      { path: 'rollout.maxConcurrentSamples', message: ['must be >= batchSize'] },
    ]);
  });
});
