/**
 * The program's begin/await pairs (src/iteration/operations.ts, program.ts): the admission inside
 * the step or begun beside other work, and what a failure leaves; the train step, which does not
 * wait for an admission begun beside the trainer's onload; the shrink's stop, issued before the
 * batch manifest is awaited; the pool's restore, which ends pending work before it stops shards.
 */
import { describe, expect, it } from 'vitest';
import { buildLayout, emptyLedger, PIPELINE_POLICY, planShrink } from '../../src/gpu';
import { beginOffload } from '../../src/gpu/roles';
import { stalenessAdmission } from '../../src/iteration/admission';
import type { IterationEffects, ShardRef } from '../../src/iteration/effects';
import { awaitRefill, awaitSeal, beginRefill, beginSeal, refill } from '../../src/iteration/operations';
import { releaseAndTrain, restoreServingPool, shrink } from '../../src/iteration/program';
import type { ShardOutcome } from '../../src/contract/types';
import { createIterationState } from '../../src/iteration/state';

const layout = buildLayout({ strategy: 'multiplexed', nodes: 2, gpusPerNode: 4, rolloutGpus: [0, 1, 2, 3, 4, 5, 6, 7], gpusPerRank: 2, trainGpus: [0, 1, 2], asyncRatio: 1 });

function state() {
  return createIterationState(
    {
      layout,
      iteration: 0,
      fromVersion: 0,
      ledger: emptyLedger(),
      batchSize: 4,
      asyncRatio: 1,
      maxConcurrentSamples: 8,
      maxContextTokens: 4096,
      lostRanks: [],
      rejoinRanks: [],
      recoverFromStore: true,
      options: { policy: PIPELINE_POLICY, admission: stalenessAdmission('drop') },
    },
    0,
  );
}

/** Only what the admission calls; it fails or succeeds as told, and every call is logged in order. */
function effects(admission: 'fails' | 'succeeds'): { fx: IterationEffects<never>; admitted: ShardRef[][]; calls: string[] } {
  const admitted: ShardRef[][] = [];
  const calls: string[] = [];
  let begun: ShardRef[] | undefined;
  const sealed = new Set(SEALED);
  const fx = {
    shardId: (rank: number, serial: number) => `i0-r${rank}-s${serial}`,
    reportedKvCapacity: () => new Map(),
    *admitAndLaunch({ shards }: { shards: ShardRef[] }) {
      calls.push('admitAndLaunch');
      if (admission === 'fails') throw new Error('admitSamples: environment reset failed');
      admitted.push(shards);
    },
    beginAdmitAndLaunch({ shards }: { shards: ShardRef[] }) {
      calls.push('beginAdmitAndLaunch');
      begun = shards;
    },
    *awaitAdmitAndLaunch() {
      calls.push('awaitAdmitAndLaunch');
      if (admission === 'fails') throw new Error('admitSamples: environment reset failed');
      admitted.push(begun!);
    },
    now: () => 0,
    phaseEntered: () => calls.push('phaseEntered'),
    poolChanged: () => undefined,
    beginReleaseAndOnloadTrainer: () => calls.push('beginReleaseAndOnloadTrainer'),
    *awaitReleaseAndOnloadTrainer() {
      calls.push('awaitReleaseAndOnloadTrainer');
    },
    *trainStep({ fromVersion }: { fromVersion: number }) {
      calls.push('trainStep');
      return [fromVersion + 1];
    },
    beginTrainerOffload: () => calls.push('beginTrainerOffload'),
    beginSealBatch: ({ besideOtherWork }: { besideOtherWork: boolean }) => calls.push(`beginSealBatch beside=${besideOtherWork}`),
    *awaitSealBatch() {
      calls.push('awaitSealBatch');
      return { totalTokens: 1000, totalTokensSquared: 600_000 };
    },
    // Every stopped sample still live is unfinished; the batch's (sealed, gone from the ledger) completed.
    *stopShards({ shards }: { shards: ShardRef[] }) {
      calls.push(`stopShards ${shards.map((shard) => shard.id).join(',')}`);
      const outcomes: ShardOutcome[] = shards.map((shard) => ({ shardId: shard.id, completed: shard.sampleIds.filter((id) => sealed.has(id)), unfinished: shard.sampleIds.filter((id) => !sealed.has(id)), dropped: [] }));
      return { outcomes, failures: [] };
    },
    launchShards: (shards: readonly ShardRef[]) => {
      for (const shard of shards) calls.push(`launchShard ${shard.id}`);
    },
    lostRanks: () => new Set(),
    trainerNodeLost: () => false,
    *trainerOffload() {
      calls.push('trainerOffload');
    },
    *resumeMemorySettled() {
      calls.push('resumeMemorySettled');
      return [];
    },
  } as unknown as IterationEffects<never>;
  return { fx, admitted, calls };
}

/** A state past the shrink's planning: the train group's ranks released, the others kept. */
function shrunkState() {
  const st = state();
  const plan = planShrink(layout);
  st.release = plan.release;
  st.keep = plan.keep;
  st.pool = beginOffload(layout, st.pool, plan.release);
  return st;
}

/** The samples the shrink tests seal as the batch (running on their shards when sealed). */
const SEALED = [0, 1];

function run(step: Generator<never, void>): void {
  for (let next = step.next(); !next.done; next = step.next());
}

describe('refill', () => {
  it('places the admitted samples as shards and keeps them when the admission succeeds', () => {
    const st = state();
    const { fx, admitted } = effects('succeeds');
    run(refill(fx, st, [0, 1, 2, 3], { batchSealed: false, behindOtherWork: false }));
    expect(admitted).toHaveLength(1);
    expect([...st.shards.keys()]).toEqual(admitted[0]!.map((shard) => shard.id));
    expect(admitted[0]!.flatMap((shard) => shard.sampleIds).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('leaves no shard of a failed admission for the restore to stop, and raises the failure', () => {
    for (const behindOtherWork of [false, true]) {
      const st = state();
      const { fx, calls } = effects('fails');
      expect(() => run(refill(fx, st, [0, 1, 2, 3], { batchSealed: false, behindOtherWork }))).toThrow(/environment reset failed/);
      expect(st.shards.size).toBe(0);
      expect(st.admitting).toBeUndefined();
      expect(calls).toEqual(behindOtherWork ? ['beginAdmitAndLaunch', 'awaitAdmitAndLaunch'] : ['admitAndLaunch']);
    }
  });

  it('holds a begun admission until it is awaited, and refuses a second one meanwhile', () => {
    const st = state();
    const { fx, admitted } = effects('succeeds');
    beginRefill(fx, st, [0, 1], { batchSealed: false });
    expect(st.admitting).toHaveLength(2);
    expect(admitted).toHaveLength(0);
    expect(() => beginRefill(fx, st, [2, 3], { batchSealed: false })).toThrow(/pending already/);
    run(awaitRefill(fx, st));
    expect(st.admitting).toBeUndefined();
    expect(admitted).toHaveLength(1);
    expect([...st.shards.keys()]).toEqual(admitted[0]!.map((shard) => shard.id));
    // Nothing pending: a no-op.
    run(awaitRefill(fx, st));
    expect(admitted).toHaveLength(1);
  });
});

describe('releaseAndTrain', () => {
  it('begins the kept ranks\' admission with the onload and steps before awaiting it', () => {
    const st = shrunkState();
    const { fx, admitted, calls } = effects('succeeds');
    run(releaseAndTrain(fx, st));
    expect(calls.filter((call) => call !== 'phaseEntered')).toEqual([
      'beginAdmitAndLaunch',
      'beginReleaseAndOnloadTrainer',
      'awaitReleaseAndOnloadTrainer',
      'trainStep',
      'awaitAdmitAndLaunch',
      'beginTrainerOffload',
    ]);
    expect(admitted).toHaveLength(1);
    expect(st.committedVersion).toBe(1);
  });
});

describe('begin/await around the shrink and the pool\'s restore', () => {
  it('a refused admission decision leaves no onload begun', () => {
    const st = shrunkState();
    const { fx, calls } = effects('succeeds');
    const refusing = {
      ...st.input.options.admission,
      admissionRoom: () => {
        throw new Error('admission room: a bug refused the decision');
      },
    };
    const refused = { ...st, input: { ...st.input, options: { ...st.input.options, admission: refusing } } };
    expect(() => run(releaseAndTrain(fx, refused))).toThrow(/refused the decision/);
    expect(calls).not.toContain('beginReleaseAndOnloadTrainer');
  });

  it('issues the released ranks\' stop before it awaits the manifest, and takes its figures after', () => {
    const st = state();
    const { fx, calls } = effects('succeeds');
    run(refill(fx, st, [0, 1, 2, 3], { batchSealed: false, behindOtherWork: false }));
    beginSeal(fx, st, SEALED, { besideOtherWork: true });
    expect(st.batch).toBeUndefined();
    run(shrink(fx, st));
    run(awaitSeal(fx, st));
    const order = calls.filter((call) => call.startsWith('beginSealBatch') || call.startsWith('stopShards') || call === 'awaitSealBatch');
    expect(order[0]).toBe('beginSealBatch beside=true');
    expect(order[1]).toMatch(/^stopShards /);
    expect(order[2]).toBe('awaitSealBatch');
    expect(st.batch?.totalTokens).toBe(1000);
    expect(st.ledger.counters.trainedContext).toEqual({ samples: 2, tokens: 1000, squaredTokens: 600_000 });
    expect(st.sealing).toBeUndefined();
  });

  it('ends a pending admission before stopping shards, then stops the shards it started', () => {
    const st = state();
    const { fx, calls } = effects('succeeds');
    beginRefill(fx, st, [0, 1], { batchSealed: false });
    const pending = [...st.admitting!];
    const problems = (() => {
      const step = restoreServingPool(fx, st);
      let next = step.next();
      while (!next.done) next = step.next();
      return next.value;
    })();
    expect(problems).toEqual([]);
    const stop = calls.findIndex((call) => call.startsWith('stopShards'));
    expect(calls.indexOf('awaitAdmitAndLaunch')).toBeLessThan(stop);
    expect(calls[stop]).toBe(`stopShards ${pending.map((shard) => shard.id).join(',')}`);
    expect(st.shards.size).toBe(0);
  });

  it('forgets the shards of a pending admission that fails, and reports no restore problem', () => {
    const st = state();
    const { fx, calls } = effects('fails');
    beginRefill(fx, st, [0, 1], { batchSealed: false });
    const step = restoreServingPool(fx, st);
    let next = step.next();
    while (!next.done) next = step.next();
    expect(next.value).toEqual([]);
    expect(calls.some((call) => call.startsWith('stopShards'))).toBe(false);
    expect(st.shards.size).toBe(0);
    expect(st.admitting).toBeUndefined();
  });
});
