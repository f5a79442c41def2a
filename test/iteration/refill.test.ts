/** The program's refill when the admission fails (src/iteration/operations.ts). */
import { describe, expect, it } from 'vitest';
import { buildLayout, emptyLedger, PIPELINE_POLICY } from '../../src/gpu';
import { stalenessAdmission } from '../../src/iteration/admission';
import type { IterationEffects, ShardRef } from '../../src/iteration/effects';
import { refill } from '../../src/iteration/operations';
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

/** Only what refill calls; the admission fails or succeeds as told. */
function effects(admission: 'fails' | 'succeeds'): { fx: IterationEffects<never>; admitted: ShardRef[][] } {
  const admitted: ShardRef[][] = [];
  const fx = {
    shardId: (rank: number, serial: number) => `i0-r${rank}-s${serial}`,
    reportedKvCapacity: () => new Map(),
    *admitAndLaunch({ shards }: { shards: ShardRef[] }) {
      if (admission === 'fails') throw new Error('admitSamples: environment reset failed');
      admitted.push(shards);
    },
  } as unknown as IterationEffects<never>;
  return { fx, admitted };
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
    const st = state();
    const { fx } = effects('fails');
    expect(() => run(refill(fx, st, [0, 1, 2, 3], { batchSealed: false, behindOtherWork: true }))).toThrow(/environment reset failed/);
    expect(st.shards.size).toBe(0);
  });
});
