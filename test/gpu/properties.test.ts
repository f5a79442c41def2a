/**
 * Property-based tests of the pure core: random valid layouts and random sequences of
 * transitions (valid and invalid). Invariants: no GPU both serving and training, every invalid
 * step rejected with the state untouched, every sample in exactly one place, rank count never
 * below the strategy's minimum.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  admit,
  assignLeastLoaded,
  assignToShard,
  beginOffload,
  beginOnload,
  beginTraining,
  buildLayout,
  checkLedgerInvariants,
  checkPoolInvariants,
  completeOffload,
  completeOnload,
  drop,
  emptyLedger,
  endTraining,
  initialPoolState,
  planRebalance,
  planShrink,
  sealBatch,
  settleShard,
  ValidationError,
  type PoolLayout,
  type PoolState,
  type SampleLedger,
  type Strategy,
} from '../../src/gpu';

/** A valid layout, drawn by construction for each strategy. */
const layoutArb: fc.Arbitrary<PoolLayout> = fc
  .record({
    nodes: fc.integer({ min: 1, max: 4 }),
    gpusPerNode: fc.constantFrom(1, 2, 4, 8),
    rankWidthLog: fc.integer({ min: 0, max: 3 }),
    strategy: fc.constantFrom<Strategy>('colocated', 'disaggregated', 'multiplexed'),
    split: fc.double({ min: 0.05, max: 0.95, noNaN: true }),
  })
  .filter(({ nodes, gpusPerNode, strategy }) => strategy !== 'disaggregated' || nodes * gpusPerNode >= 2)
  .map(({ nodes, gpusPerNode, rankWidthLog, strategy, split }) => {
    const total = nodes * gpusPerNode;
    const gpusPerRank = Math.min(gpusPerNode, 2 ** rankWidthLog);
    const all = Array.from({ length: total }, (_, i) => i);
    if (strategy === 'colocated') return buildLayout({ strategy, nodes, gpusPerNode, rolloutGpus: all, gpusPerRank, trainGpus: all, asyncRatio: 0 });
    if (strategy === 'disaggregated') {
      // Rollout: whole ranks from the front; train: the rest.
      const ranks = Math.max(1, Math.min(total / gpusPerRank - 1, Math.floor((total / gpusPerRank) * split)));
      const rollout = all.slice(0, ranks * gpusPerRank);
      const train = all.slice(ranks * gpusPerRank);
      if (train.length === 0) return buildLayout({ strategy: 'colocated', nodes, gpusPerNode, rolloutGpus: all, gpusPerRank, trainGpus: all, asyncRatio: 0 });
      return buildLayout({ strategy, nodes, gpusPerNode, rolloutGpus: rollout, gpusPerRank, trainGpus: train, asyncRatio: 1 });
    }
    // multiplexed: train on a prefix of GPUs that leaves at least one whole rank untouched.
    const rankCount = total / gpusPerRank;
    if (rankCount < 2) return buildLayout({ strategy: 'colocated', nodes, gpusPerNode, rolloutGpus: all, gpusPerRank, trainGpus: all, asyncRatio: 0 });
    const trainCount = Math.max(1, Math.min((rankCount - 1) * gpusPerRank, Math.floor(total * split)));
    return buildLayout({ strategy, nodes, gpusPerNode, rolloutGpus: all, gpusPerRank, trainGpus: all.slice(0, trainCount), asyncRatio: 1 });
  });

type Step =
  | { kind: 'beginOffload' | 'completeOffload' | 'beginOnload' | 'completeOnload'; pick: number[] }
  | { kind: 'beginTraining' | 'endTraining' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constantFrom('beginOffload', 'completeOffload', 'beginOnload', 'completeOnload' as const), pick: fc.array(fc.nat(20), { maxLength: 4 }) }),
  fc.record({ kind: fc.constantFrom('beginTraining', 'endTraining' as const) }),
) as fc.Arbitrary<Step>;

function apply(layout: PoolLayout, state: PoolState, step: Step, useShrinkSet: boolean): PoolState {
  if (!('pick' in step)) return (step.kind === 'beginTraining' ? beginTraining : endTraining)(layout, state);
  // Half the time the ranks shrink would pick, half the time arbitrary (often invalid) ids.
  const ranks = useShrinkSet ? layout.shrinkRanks : step.pick;
  const fn = { beginOffload, completeOffload, beginOnload, completeOnload }[step.kind];
  return fn(layout, state, ranks);
}

describe('pool transitions (property-based)', () => {
  it('every step keeps the invariants or is rejected leaving the state untouched', () => {
    fc.assert(
      fc.property(layoutArb, fc.array(fc.tuple(stepArb, fc.boolean()), { maxLength: 30 }), (layout, steps) => {
        let state = initialPoolState(layout);
        for (const [step, useShrinkSet] of steps) {
          const before = structuredClone(state);
          try {
            state = apply(layout, state, step, useShrinkSet);
          } catch (error) {
            expect(error).toBeInstanceOf(ValidationError);
            expect(state).toEqual(before);
            continue;
          }
          checkPoolInvariants(layout, state);
          // No GPU both in a serving rank and training.
          for (const rank of layout.ranks) {
            if (state.rankPhases[rank.id] === 'serving') for (const gpu of rank.gpus) expect(state.roles[gpu]).toBe('rollout');
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('the full shrink → train → expand cycle is always valid for the planned shrink set', () => {
    fc.assert(
      fc.property(layoutArb, (layout) => {
        const { release } = planShrink(layout);
        let state = initialPoolState(layout);
        if (release.length > 0) state = completeOffload(layout, beginOffload(layout, state, release), release);
        state = endTraining(layout, beginTraining(layout, state));
        if (release.length > 0) state = completeOnload(layout, beginOnload(layout, state, release), release);
        expect(state).toEqual(initialPoolState(layout));
      }),
      { numRuns: 200 },
    );
  });

  it('shrink never leaves a multiplexed pool without a rolling rank, whatever the override', () => {
    fc.assert(
      fc.property(layoutArb, fc.array(fc.nat(40), { maxLength: 8 }), (layout, extra) => {
        let plan;
        try {
          plan = planShrink(layout, layout.strategy === 'disaggregated' ? undefined : [...new Set([...layout.shrinkRanks, ...extra])]);
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError);
          return;
        }
        if (layout.strategy === 'multiplexed') expect(plan.keep.length).toBeGreaterThanOrEqual(1);
        expect([...plan.release, ...plan.keep].sort((a, b) => a - b)).toEqual(layout.ranks.map((rank) => rank.id));
        for (const rank of layout.shrinkRanks) expect(plan.release).toContain(rank);
      }),
      { numRuns: 300 },
    );
  });
});

type LedgerOp =
  | { kind: 'admit'; count: number }
  | { kind: 'assign'; take: number; rank: number }
  | { kind: 'settle'; shard: number; unfinishedMask: number }
  | { kind: 'seal'; take: number }
  | { kind: 'drop'; take: number }
  | { kind: 'bogus-seal'; id: number };

const ledgerOpArb: fc.Arbitrary<LedgerOp> = fc.oneof(
  fc.record({ kind: fc.constant('admit' as const), count: fc.integer({ min: 0, max: 6 }) }),
  fc.record({ kind: fc.constant('assign' as const), take: fc.integer({ min: 1, max: 5 }), rank: fc.nat(3) }),
  fc.record({ kind: fc.constant('settle' as const), shard: fc.nat(30), unfinishedMask: fc.nat(255) }),
  fc.record({ kind: fc.constant('seal' as const), take: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ kind: fc.constant('drop' as const), take: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant('bogus-seal' as const), id: fc.nat(60) }),
);

describe('sample ledger (property-based, against a model)', () => {
  it('every admitted sample is exactly one of live / batched / dropped, after every operation', () => {
    fc.assert(
      fc.property(fc.array(ledgerOpArb, { maxLength: 60 }), (ops) => {
        let ledger: SampleLedger = emptyLedger();
        const batched = new Set<number>();
        const dropped = new Set<number>();
        let shards = 0;
        for (const op of ops) {
          const before = structuredClone(ledger);
          try {
            switch (op.kind) {
              case 'admit':
                ledger = admit(ledger, op.count, 0).ledger;
                break;
              case 'assign': {
                const waiting = ledger.live.filter((s) => s.state === 'waiting').slice(0, op.take).map((s) => s.id);
                ledger = assignToShard(ledger, waiting, op.rank, `shard-${shards++}`);
                break;
              }
              case 'settle': {
                const onShard = ledger.live.filter((s) => s.shardId === `shard-${op.shard}`).map((s) => s.id);
                const unfinished = onShard.filter((_, i) => (op.unfinishedMask >> i) & 1);
                ledger = settleShard(ledger, `shard-${op.shard}`, unfinished);
                break;
              }
              case 'seal': {
                const ids = ledger.live.filter((s) => s.state !== 'waiting').slice(0, op.take).map((s) => s.id);
                ledger = sealBatch(ledger, ids);
                ids.forEach((id) => batched.add(id));
                break;
              }
              case 'drop': {
                const ids = ledger.live.filter((s) => s.state !== 'running').slice(0, op.take).map((s) => s.id);
                ledger = drop(ledger, ids, 'stale');
                ids.forEach((id) => dropped.add(id));
                break;
              }
              case 'bogus-seal':
                // Sealing something not live and finished must be refused.
                if (ledger.live.some((s) => s.id === op.id && s.state !== 'waiting')) return;
                expect(() => sealBatch(ledger, [op.id])).toThrow(ValidationError);
                expect(ledger).toEqual(before);
                continue;
            }
          } catch (error) {
            expect(error).toBeInstanceOf(ValidationError);
            expect(ledger).toEqual(before);
            continue;
          }
          checkLedgerInvariants(ledger);
          const live = new Set(ledger.live.map((s) => s.id));
          for (let id = 0; id < ledger.nextSampleId; id++) {
            const places = Number(live.has(id)) + Number(batched.has(id)) + Number(dropped.has(id));
            expect(places, `sample ${id}`).toBe(1);
          }
          expect(ledger.counters.batched).toBe(batched.size);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('placement (property-based)', () => {
  it('assignLeastLoaded places every sample once and balances equal loads within 1', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 80 }), fc.nat(5), (ranks, count, base) => {
        const ids = Array.from({ length: count }, (_, i) => i * 3);
        const placements = assignLeastLoaded(ids, Array.from({ length: ranks }, (_, rank) => ({ rank, load: base })));
        const placed = placements.flatMap((p) => p.sampleIds).sort((a, b) => a - b);
        expect(placed).toEqual(ids);
        const loads = Array.from({ length: ranks }, (_, rank) => placements.find((p) => p.rank === rank)?.sampleIds.length ?? 0);
        expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });

  it('planRebalance places every sample once, within capacity, keeping affinity where it can', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(fc.tuple(fc.nat(10), fc.integer({ min: 0, max: 9 })), { maxLength: 60 }), fc.integer({ min: 0, max: 10 }), (rankCount, onRank, unplacedCount) => {
        const ranks = Array.from({ length: rankCount }, (_, r) => r);
        const byRank = new Map<number, number[]>();
        onRank.forEach(([rank], index) => byRank.set(rank, [...(byRank.get(rank) ?? []), index]));
        const current = [...byRank.entries()].map(([rank, sampleIds]) => ({ rank, sampleIds }));
        const unplaced = Array.from({ length: unplacedCount }, (_, i) => 1000 + i);
        const result = planRebalance(current, unplaced, ranks);
        const all = [...current.flatMap((p) => p.sampleIds), ...unplaced].sort((a, b) => a - b);
        expect(result.flatMap((p) => p.sampleIds).sort((a, b) => a - b)).toEqual(all);
        const capacity = Math.ceil(all.length / rankCount);
        for (const placement of result) {
          expect(ranks).toContain(placement.rank);
          expect(placement.sampleIds.length).toBeLessThanOrEqual(capacity);
          // Affinity: a sample that stayed was on this rank before, or moved because it had to.
          const before = byRank.get(placement.rank) ?? [];
          const stayed = placement.sampleIds.filter((id) => before.includes(id));
          expect(stayed.length).toBe(Math.min(before.length, capacity));
        }
      }),
      { numRuns: 300 },
    );
  });
});
