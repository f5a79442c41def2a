/**
 * The program's admission (src/iteration/operations.ts): inside the step or begun beside other
 * work, what a failure leaves; and the train step, which does not wait for an admission begun
 * beside the trainer's onload (src/iteration/program.ts).
 */
import { describe, expect, it } from 'vitest';
import { buildLayout, emptyLedger, PIPELINE_POLICY, planShrink } from '../../src/gpu';
import { beginOffload } from '../../src/gpu/roles';
import { stalenessAdmission } from '../../src/iteration/admission';
import type { IterationEffects, ShardRef } from '../../src/iteration/effects';
import { awaitRefill, beginRefill, refill } from '../../src/iteration/operations';
import { releaseAndTrain } from '../../src/iteration/program';
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
      lostRanks: [],
      rejoinRanks: [],
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
  } as unknown as IterationEffects<never>;
  return { fx, admitted, calls };
}

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
  it('begins the kept ranks\' admission beside the onload and steps before awaiting it', () => {
    const st = state();
    const plan = planShrink(layout);
    st.release = plan.release;
    st.keep = plan.keep;
    st.pool = beginOffload(layout, st.pool, plan.release);
    const { fx, admitted, calls } = effects('succeeds');
    run(releaseAndTrain(fx, st));
    expect(calls.filter((call) => call !== 'phaseEntered')).toEqual([
      'beginReleaseAndOnloadTrainer',
      'beginAdmitAndLaunch',
      'awaitReleaseAndOnloadTrainer',
      'trainStep',
      'awaitAdmitAndLaunch',
      'beginTrainerOffload',
    ]);
    expect(admitted).toHaveLength(1);
    expect(st.committedVersion).toBe(1);
  });
});
