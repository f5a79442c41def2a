/** GPU roles and the shrink/train/expand transitions: full cycles per strategy, and every refusal. */
import { describe, expect, it } from 'vitest';
import {
  beginOffload,
  beginOnload,
  beginTraining,
  buildLayout,
  checkPoolInvariants,
  completeOffload,
  completeOnload,
  endTraining,
  initialPoolState,
  roleCounts,
  type GpuRole,
  type PoolLayout,
  type PoolState,
  type RankId,
} from '../../src/gpu';
import { COLOCATED, DISAGGREGATED, deepFreeze, expectRejectedUnchanged, expectValidation, MULTIPLEXED, range } from './helpers';

type Counts = Record<GpuRole, number>;
const counts = (partial: Partial<Counts>): Counts => ({ rollout: 0, offloading: 0, training: 0, loading: 0, idle: 0, lost: 0, ...partial });

type Step = { name: string; run: (layout: PoolLayout, state: PoolState) => PoolState; roles: Counts; phases: PoolState['rankPhases'] };

/** Runs the steps from the initial state, checking counts, phases and invariants each time; inputs are frozen. */
function runCycle(layout: PoolLayout, initial: Counts, steps: Step[]): PoolState {
  let state = initialPoolState(layout);
  expect(roleCounts(state)).toEqual(initial);
  expect(state.rankPhases.every((phase) => phase === 'serving')).toBe(true);
  for (const step of steps) {
    const input = deepFreeze(structuredClone(state));
    const next = step.run(layout, input);
    expect(roleCounts(next), step.name).toEqual(step.roles);
    expect(next.rankPhases, step.name).toEqual(step.phases);
    checkPoolInvariants(layout, next);
    state = next;
  }
  return state;
}

const offload = (ranks: RankId[]) => (layout: PoolLayout, state: PoolState) => beginOffload(layout, state, ranks);
const offloaded = (ranks: RankId[]) => (layout: PoolLayout, state: PoolState) => completeOffload(layout, state, ranks);
const onload = (ranks: RankId[]) => (layout: PoolLayout, state: PoolState) => beginOnload(layout, state, ranks);
const onloaded = (ranks: RankId[]) => (layout: PoolLayout, state: PoolState) => completeOnload(layout, state, ranks);

describe('initial state', () => {
  it('rollout GPUs roll out, every other GPU is idle, every rank serves', () => {
    const layout = buildLayout({ ...DISAGGREGATED, rolloutGpus: [0, 1], trainGpus: [4, 5] });
    const state = initialPoolState(layout);
    expect(state.roles).toEqual(['rollout', 'rollout', 'idle', 'idle', 'idle', 'idle', 'idle', 'idle']);
    expect(state.rankPhases).toEqual(['serving']);
    expect(roleCounts(state)).toEqual(counts({ rollout: 2, idle: 6 }));
  });
});

describe('full cycles', () => {
  it('multiplexed: serving → offloading → released → training → idle → loading → serving', () => {
    const layout = buildLayout(MULTIPLEXED); // ranks [0,1] [2,3] [4,5] [6,7], train 0–2, release ranks 0 and 1
    const final = runCycle(layout, counts({ rollout: 8 }), [
      { name: 'beginOffload', run: offload([0, 1]), roles: counts({ rollout: 4, offloading: 4 }), phases: ['offloading', 'offloading', 'serving', 'serving'] },
      { name: 'completeOffload', run: offloaded([0, 1]), roles: counts({ rollout: 4, idle: 4 }), phases: ['released', 'released', 'serving', 'serving'] },
      // GPU 3 is on released rank 1 but not in the train group: it stays idle.
      { name: 'beginTraining', run: beginTraining, roles: counts({ rollout: 4, training: 3, idle: 1 }), phases: ['released', 'released', 'serving', 'serving'] },
      { name: 'endTraining', run: endTraining, roles: counts({ rollout: 4, idle: 4 }), phases: ['released', 'released', 'serving', 'serving'] },
      { name: 'beginOnload', run: onload([0, 1]), roles: counts({ rollout: 4, loading: 4 }), phases: ['loading', 'loading', 'serving', 'serving'] },
      { name: 'completeOnload', run: onloaded([0, 1]), roles: counts({ rollout: 8 }), phases: ['serving', 'serving', 'serving', 'serving'] },
    ]);
    expect(final).toEqual(initialPoolState(layout));
  });

  it('multiplexed: the exact roles while training', () => {
    const layout = buildLayout(MULTIPLEXED);
    const released = completeOffload(layout, beginOffload(layout, initialPoolState(layout), [0, 1]), [0, 1]);
    expect(beginTraining(layout, released).roles).toEqual(['training', 'training', 'training', 'idle', 'rollout', 'rollout', 'rollout', 'rollout']);
  });

  it('multiplexed: ranks may offload and onload in separate groups, and release more than the train group needs', () => {
    const layout = buildLayout(MULTIPLEXED);
    const final = runCycle(layout, counts({ rollout: 8 }), [
      { name: 'offload 1', run: offload([1]), roles: counts({ rollout: 6, offloading: 2 }), phases: ['serving', 'offloading', 'serving', 'serving'] },
      { name: 'offload 0,2', run: offload([2, 0]), roles: counts({ rollout: 2, offloading: 6 }), phases: ['offloading', 'offloading', 'offloading', 'serving'] },
      { name: 'offloaded 2', run: offloaded([2]), roles: counts({ rollout: 2, offloading: 4, idle: 2 }), phases: ['offloading', 'offloading', 'released', 'serving'] },
      { name: 'offloaded 0,1', run: offloaded([0, 1]), roles: counts({ rollout: 2, idle: 6 }), phases: ['released', 'released', 'released', 'serving'] },
      { name: 'train', run: beginTraining, roles: counts({ rollout: 2, training: 3, idle: 3 }), phases: ['released', 'released', 'released', 'serving'] },
      // Rank 2 has no train GPU: it may reload while the others train.
      { name: 'onload 2 during training', run: onload([2]), roles: counts({ rollout: 2, training: 3, idle: 1, loading: 2 }), phases: ['released', 'released', 'loading', 'serving'] },
      { name: 'onloaded 2', run: onloaded([2]), roles: counts({ rollout: 4, training: 3, idle: 1 }), phases: ['released', 'released', 'serving', 'serving'] },
      { name: 'end', run: endTraining, roles: counts({ rollout: 4, idle: 4 }), phases: ['released', 'released', 'serving', 'serving'] },
      { name: 'onload 0,1', run: onload([1, 0]), roles: counts({ rollout: 4, loading: 4 }), phases: ['loading', 'loading', 'serving', 'serving'] },
      { name: 'onloaded 0,1', run: onloaded([0, 1]), roles: counts({ rollout: 8 }), phases: ['serving', 'serving', 'serving', 'serving'] },
    ]);
    expect(final).toEqual(initialPoolState(layout));
  });

  it('colocated: every rank offloads, every GPU trains, every rank reloads', () => {
    const layout = buildLayout(COLOCATED);
    const all = [0, 1];
    const final = runCycle(layout, counts({ rollout: 4 }), [
      { name: 'beginOffload', run: offload(all), roles: counts({ offloading: 4 }), phases: ['offloading', 'offloading'] },
      { name: 'completeOffload', run: offloaded(all), roles: counts({ idle: 4 }), phases: ['released', 'released'] },
      { name: 'beginTraining', run: beginTraining, roles: counts({ training: 4 }), phases: ['released', 'released'] },
      { name: 'endTraining', run: endTraining, roles: counts({ idle: 4 }), phases: ['released', 'released'] },
      { name: 'beginOnload', run: onload(all), roles: counts({ loading: 4 }), phases: ['loading', 'loading'] },
      { name: 'completeOnload', run: onloaded(all), roles: counts({ rollout: 4 }), phases: ['serving', 'serving'] },
    ]);
    expect(final).toEqual(initialPoolState(layout));
  });

  it('disaggregated: training needs no shrink and never touches the rollout ranks', () => {
    const layout = buildLayout(DISAGGREGATED);
    const final = runCycle(layout, counts({ rollout: 4, idle: 4 }), [
      { name: 'beginTraining', run: beginTraining, roles: counts({ rollout: 4, training: 4 }), phases: ['serving', 'serving'] },
      { name: 'endTraining', run: endTraining, roles: counts({ rollout: 4, idle: 4 }), phases: ['serving', 'serving'] },
      { name: 'beginTraining again', run: beginTraining, roles: counts({ rollout: 4, training: 4 }), phases: ['serving', 'serving'] },
      { name: 'endTraining again', run: endTraining, roles: counts({ rollout: 4, idle: 4 }), phases: ['serving', 'serving'] },
    ]);
    expect(final).toEqual(initialPoolState(layout));
  });
});

describe('invalid transitions: refused, naming the ranks or GPUs, input state untouched', () => {
  const layout = buildLayout(MULTIPLEXED);
  // Frozen: a transition that wrote to its input, even on the way to refusing, would throw a TypeError.
  const serving = deepFreeze(initialPoolState(layout));
  const offloading = deepFreeze(beginOffload(layout, serving, [0, 1]));
  const released = deepFreeze(completeOffload(layout, offloading, [0, 1]));
  const training = deepFreeze(beginTraining(layout, released));
  const loading = deepFreeze(beginOnload(layout, endTraining(layout, training), [0, 1]));

  it('a rank in the wrong phase, for each transition', () => {
    expectRejectedUnchanged(serving, (s) => completeOffload(layout, s, [0]), 'AST_POSTCONDITION', 'completeOffload', '"rank":0', '"phase":"serving"', "must be 'offloading' first");
    expectRejectedUnchanged(serving, (s) => beginOnload(layout, s, [2]), 'AST_POSTCONDITION', 'beginOnload', '"rank":2', '"phase":"serving"', "must be 'released' first");
    expectRejectedUnchanged(serving, (s) => completeOnload(layout, s, [3]), 'AST_POSTCONDITION', 'completeOnload', '"rank":3', "must be 'loading' first");
    expectRejectedUnchanged(offloading, (s) => beginOffload(layout, s, [1]), 'AST_POSTCONDITION', 'beginOffload', '"rank":1', '"phase":"offloading"', "must be 'serving' first");
    expectRejectedUnchanged(released, (s) => completeOffload(layout, s, [0]), 'AST_POSTCONDITION', 'completeOffload', '"phase":"released"');
    expectRejectedUnchanged(released, (s) => completeOnload(layout, s, [0]), 'AST_POSTCONDITION', 'completeOnload', '"phase":"released"');
    expectRejectedUnchanged(loading, (s) => beginOffload(layout, s, [0]), 'AST_POSTCONDITION', 'beginOffload', '"phase":"loading"');
    expectRejectedUnchanged(loading, (s) => beginOnload(layout, s, [1]), 'AST_POSTCONDITION', 'beginOnload', '"phase":"loading"');
  });

  it('a mixed list with one wrong rank changes none of them, and names only the wrong one', () => {
    const error = expectRejectedUnchanged(offloading, (s) => completeOffload(layout, s, [0, 2]), 'AST_POSTCONDITION', 'completeOffload');
    expect(JSON.parse(error.offending)).toEqual([{ rank: 2, phase: 'serving' }]);
    const both = expectRejectedUnchanged(serving, (s) => beginOnload(layout, s, [3, 1]), 'AST_POSTCONDITION', 'beginOnload');
    expect(JSON.parse(both.offending)).toEqual([
      { rank: 3, phase: 'serving' },
      { rank: 1, phase: 'serving' },
    ]);
  });

  it('training on a serving rank’s GPUs', () => {
    const error = expectRejectedUnchanged(serving, (s) => beginTraining(layout, s), 'AST_POSTCONDITION', 'beginTraining', 'every train GPU must be idle');
    expect(JSON.parse(error.offending)).toEqual([
      { gpu: 0, role: 'rollout' },
      { gpu: 1, role: 'rollout' },
      { gpu: 2, role: 'rollout' },
    ]);
  });

  it('training while only part of the shrink set is released', () => {
    const partial = completeOffload(layout, beginOffload(layout, serving, [0]), [0]);
    const error = expectRejectedUnchanged(partial, (s) => beginTraining(layout, s), 'AST_POSTCONDITION', 'beginTraining');
    expect(JSON.parse(error.offending)).toEqual([{ gpu: 2, role: 'rollout' }]);
  });

  it('training while the engines are still offloading, and training twice', () => {
    const offloadingError = expectRejectedUnchanged(offloading, (s) => beginTraining(layout, s), 'AST_POSTCONDITION', 'beginTraining');
    expect(JSON.parse(offloadingError.offending)).toEqual([0, 1, 2].map((gpu) => ({ gpu, role: 'offloading' })));
    const twice = expectRejectedUnchanged(training, (s) => beginTraining(layout, s), 'AST_POSTCONDITION', 'beginTraining');
    expect(JSON.parse(twice.offending)).toEqual([0, 1, 2].map((gpu) => ({ gpu, role: 'training' })));
  });

  it('ending training that is not running', () => {
    expectRejectedUnchanged(serving, (s) => endTraining(layout, s), 'AST_POSTCONDITION', 'endTraining', 'offending: [0,1,2]', 'not training');
    expectRejectedUnchanged(released, (s) => endTraining(layout, s), 'AST_POSTCONDITION', 'endTraining', 'offending: [0,1,2]');
  });

  it('onload (or any move) while the rank’s GPUs train', () => {
    expectRejectedUnchanged(training, (s) => beginOnload(layout, s, [0]), 'AST_POSTCONDITION', 'beginOnload', 'still training', 'offending: [0,1]');
    expectRejectedUnchanged(training, (s) => beginOnload(layout, s, [1]), 'AST_POSTCONDITION', 'beginOnload', 'still training', 'offending: [2]');
    expectRejectedUnchanged(training, (s) => beginOnload(layout, s, [0, 1]), 'AST_POSTCONDITION', 'beginOnload', 'offending: [0,1,2]');
  });

  it('duplicate rank ids', () => {
    expectRejectedUnchanged(serving, (s) => beginOffload(layout, s, [0, 1, 0]), 'VAL_NO_DUPLICATES', 'beginOffload', 'offending: [0]');
    expectRejectedUnchanged(released, (s) => beginOnload(layout, s, [1, 1]), 'VAL_NO_DUPLICATES', 'beginOnload', 'offending: [1]');
  });

  it('unknown rank ids', () => {
    for (const rank of [4, -1, 1.5]) {
      expectRejectedUnchanged(serving, (s) => beginOffload(layout, s, [0, rank]), 'VAL_INT_RANGE', 'beginOffload: rank id', `offending: ${rank}`);
    }
    expectRejectedUnchanged(offloading, (s) => completeOffload(layout, s, [9]), 'VAL_INT_RANGE', 'completeOffload: rank id', '[0, 3]');
  });

  it('empty rank lists', () => {
    expectRejectedUnchanged(serving, (s) => beginOffload(layout, s, []), 'VAL_NON_EMPTY', 'beginOffload');
    expectRejectedUnchanged(offloading, (s) => completeOffload(layout, s, []), 'VAL_NON_EMPTY', 'completeOffload');
    expectRejectedUnchanged(released, (s) => beginOnload(layout, s, []), 'VAL_NON_EMPTY', 'beginOnload');
    expectRejectedUnchanged(loading, (s) => completeOnload(layout, s, []), 'VAL_NON_EMPTY', 'completeOnload');
  });

  it('colocated: training before every rank is released', () => {
    const colocated = buildLayout(COLOCATED);
    const half = completeOffload(colocated, beginOffload(colocated, initialPoolState(colocated), [1]), [1]);
    const error = expectRejectedUnchanged(half, (s) => beginTraining(colocated, s), 'AST_POSTCONDITION', 'beginTraining');
    expect(JSON.parse(error.offending)).toEqual([
      { gpu: 0, role: 'rollout' },
      { gpu: 1, role: 'rollout' },
    ]);
  });
});

describe('checkPoolInvariants refuses inconsistent states', () => {
  const layout = buildLayout(MULTIPLEXED);
  const valid = initialPoolState(layout);
  const withRoles = (roles: Record<number, GpuRole>, phases: Partial<Record<number, PoolState['rankPhases'][number]>> = {}): PoolState => {
    const state = structuredClone(valid);
    for (const [gpu, role] of Object.entries(roles)) state.roles[Number(gpu)] = role;
    for (const [rank, phase] of Object.entries(phases)) state.rankPhases[Number(rank)] = phase!;
    return state;
  };

  it('accepts every state the transitions produce', () => {
    expect(() => checkPoolInvariants(layout, valid)).not.toThrow();
  });

  it('wrong lengths, unknown roles and phases', () => {
    expectValidation(() => checkPoolInvariants(layout, { ...valid, roles: valid.roles.slice(1) }), 'AST_POSTCONDITION', 'one role per GPU', '7 roles for 8 GPUs');
    expectValidation(() => checkPoolInvariants(layout, { ...valid, rankPhases: [...valid.rankPhases, 'serving'] }), 'AST_POSTCONDITION', 'one phase per rank', '5 phases for 4 ranks');
    expectValidation(() => checkPoolInvariants(layout, withRoles({ 5: 'sleeping' as GpuRole })), 'AST_POSTCONDITION', 'valid roles', '"gpu":5');
    expectValidation(
      () => checkPoolInvariants(layout, withRoles({}, { 2: 'paused' as PoolState['rankPhases'][number] })),
      'AST_POSTCONDITION',
      'valid rank phases',
      '"rank":2',
    );
  });

  it('a serving rank with a GPU in training: no GPU both serving and training', () => {
    expectValidation(
      () => checkPoolInvariants(layout, withRoles({ 0: 'training' })),
      'AST_POSTCONDITION',
      'no GPU both serving and training',
      '"rank":0,"phase":"serving","gpu":0,"role":"training"',
    );
  });

  it('a GPU outside the train group training, even on a released rank', () => {
    expectValidation(
      () => checkPoolInvariants(layout, withRoles({ 2: 'idle', 3: 'training' }, { 1: 'released' })),
      'AST_POSTCONDITION',
      'only train GPUs train',
      '"gpu":3',
    );
  });

  it("a rank's GPUs not in its phase's role", () => {
    expectValidation(
      () => checkPoolInvariants(layout, withRoles({ 4: 'loading' }, { 2: 'offloading' })),
      'AST_POSTCONDITION',
      "a rank's GPUs have its phase's role",
      '"rank":2,"phase":"offloading","gpu":4,"role":"loading"',
    );
  });

  it('a GPU outside every rank that is not idle or training', () => {
    const partial = buildLayout({ ...MULTIPLEXED, rolloutGpus: range(6) });
    const state = initialPoolState(partial);
    state.roles[7] = 'rollout';
    expectValidation(() => checkPoolInvariants(partial, state), 'AST_POSTCONDITION', 'GPUs outside rollout ranks are idle or training', '"gpu":7');
  });
});
