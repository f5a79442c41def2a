/** Lost ranks: the pool goes on smaller while the strategy has what it needs, and says why when it cannot. */
import { describe, expect, it } from 'vitest';
import { addLostRanks, buildLayout, initialPoolState, markRanksLost, planWithLostRanks, rejoinRanks, removeLostRanks, completeOnload, roleCounts } from '../../src/gpu';
import { expectValidation } from './helpers';

// 2 nodes × 3 GPUs, one GPU per rank; the train group [0, 1] sits on ranks 0 and 1 (node 0).
const multiplexed = buildLayout({ strategy: 'multiplexed', nodes: 2, gpusPerNode: 3, rolloutGpus: [0, 1, 2, 3, 4, 5], gpusPerRank: 1, trainGpus: [0, 1], asyncRatio: 1 });
const disaggregated = buildLayout({ strategy: 'disaggregated', nodes: 2, gpusPerNode: 2, rolloutGpus: [0, 1, 2], gpusPerRank: 1, trainGpus: [3], asyncRatio: 1 });
const colocated = buildLayout({ strategy: 'colocated', nodes: 2, gpusPerNode: 2, rolloutGpus: [0, 1, 2, 3], gpusPerRank: 1, trainGpus: [0, 1, 2, 3], asyncRatio: 0 });

describe('planWithLostRanks', () => {
  it('without lost ranks it is the shrink plan', () => {
    expect(planWithLostRanks(multiplexed, [])).toEqual({ viable: true, release: [0, 1], keep: [2, 3, 4, 5], active: [0, 1, 2, 3, 4, 5] });
  });

  it('a lost node that holds no train GPU: the pool goes on smaller', () => {
    expect(planWithLostRanks(multiplexed, [3, 4, 5])).toEqual({ viable: true, release: [0, 1], keep: [2], active: [0, 1, 2] });
    expect(planWithLostRanks(disaggregated, [0, 1])).toEqual({ viable: true, release: [], keep: [2], active: [2] });
  });

  it('below the strategy minimum it says why', () => {
    expect(planWithLostRanks(multiplexed, [0, 1, 2])).toEqual({ viable: false, reason: expect.stringMatching(/ranks 0,1 hold train GPUs.*train group is incomplete/) });
    // Node 1 lost while the operator's shrink set releases rank 2 as well: nothing left to roll out.
    expect(planWithLostRanks(multiplexed, [3, 4, 5], [0, 1, 2])).toEqual({ viable: false, reason: expect.stringMatching(/no rank left to roll out during training/) });
    // Rank 2 shares node 0 with the train GPUs: its worker is the trainer's.
    expect(planWithLostRanks(multiplexed, [2])).toEqual({ viable: false, reason: expect.stringMatching(/ranks 2 are lost on a node that also trains/) });
    expect(planWithLostRanks(colocated, [3])).toEqual({ viable: false, reason: expect.stringMatching(/ranks 3 hold train GPUs/) });
    expect(planWithLostRanks(disaggregated, [0, 1, 2])).toEqual({ viable: false, reason: 'every rollout rank is lost' });
    // Rank 2 shares node 1 with the train GPU: one worker serves both, so the trainer is lost too.
    expect(planWithLostRanks(disaggregated, [2])).toEqual({ viable: false, reason: expect.stringMatching(/ranks 2 are lost on a node that also trains/) });
  });

  it('an operator shrink set keeps applying to the ranks left', () => {
    expect(planWithLostRanks(multiplexed, [4, 5], [0, 1, 2])).toEqual({ viable: true, release: [0, 1, 2], keep: [3], active: [0, 1, 2, 3] });
  });

  it('rejects bad rank lists', () => {
    expectValidation(() => planWithLostRanks(multiplexed, [6]), 'VAL_INT_RANGE', 'lost ranks');
    expectValidation(() => planWithLostRanks(multiplexed, [3, 3]), 'VAL_NO_DUPLICATES', 'lost ranks');
  });
});

describe('lost set updates', () => {
  it('adds and returns ranks', () => {
    expect(addLostRanks(multiplexed, [5], [3, 4])).toEqual([3, 4, 5]);
    expect(addLostRanks(multiplexed, [3], [3])).toEqual([3]);
    expect(removeLostRanks(multiplexed, [3, 4, 5], [4])).toEqual([3, 5]);
  });

  it('only lost ranks can be returned', () => {
    expectValidation(() => removeLostRanks(multiplexed, [3, 4], [2]), 'VAL_SUBSET', 'returned ranks');
    expectValidation(() => removeLostRanks(multiplexed, [3, 4], []), 'VAL_NON_EMPTY', 'returned ranks');
    expectValidation(() => removeLostRanks(multiplexed, [3, 4], [3, 3]), 'VAL_NO_DUPLICATES', 'returned ranks');
    expectValidation(() => addLostRanks(multiplexed, [], [9]), 'VAL_INT_RANGE', 'newly lost ranks');
  });
});

describe('pool state with lost ranks', () => {
  it('lost ranks have lost GPUs; rejoining ranks load before they serve', () => {
    const lost = initialPoolState(multiplexed, [3, 4]);
    expect(roleCounts(lost)).toMatchObject({ rollout: 4, lost: 2 });
    const back = completeOnload(multiplexed, rejoinRanks(multiplexed, lost, [3, 4]), [3, 4]);
    expect(back).toEqual(initialPoolState(multiplexed));
    expect(markRanksLost(multiplexed, back, [3, 4])).toEqual(lost);
  });

  it('refuses to lose a rank twice or to rejoin a rank that is not lost', () => {
    const lost = initialPoolState(multiplexed, [3]);
    expectValidation(() => markRanksLost(multiplexed, lost, [3]), 'AST_POSTCONDITION', 'markRanksLost');
    expectValidation(() => rejoinRanks(multiplexed, lost, [2]), 'AST_POSTCONDITION', 'rejoinRanks');
  });
});
