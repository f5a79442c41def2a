/**
 * Property-based tests of the pure core (fast-check), each against an independent model:
 *  (a) random valid layouts and random transition sequences, valid and invalid: the invariants hold
 *      after every step, no GPU is both in a serving rank and training, every invalid step throws a
 *      ValidationError and leaves the state as it was, and every outcome matches the model;
 *  (b) random ledger operation sequences: invariants, conservation, every admitted sample in
 *      exactly one of live / batched / dropped, every live sample in one place;
 *  (c) planShrink keeps at least one rank rolling out on a multiplexed pool, whatever the override;
 *  (d) assignLeastLoaded / planRebalance place every sample exactly once, balanced.
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
  markRanksLost,
  rejoinRanks,
  drop,
  DROP_REASONS,
  emptyLedger,
  endTraining,
  initialPoolState,
  planRebalance,
  planShrink,
  samplesOnShard,
  sealBatch,
  settleShard,
  ValidationError,
  type DropReason,
  type GpuRole,
  type LayoutInput,
  type LiveSample,
  type PoolLayout,
  type PoolState,
  type RankId,
  type RankPhase,
  type SampleLedger,
  type Strategy,
} from '../../src/gpu';
import { range } from './helpers';

const RUNS = 200;

/** Runs `fn`; returns the ValidationError it threw, or undefined. Any other exception fails the test. */
function attempt(fn: () => void): ValidationError | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    if (error instanceof ValidationError) return error;
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Layouts, valid by construction
// ---------------------------------------------------------------------------------------------

interface Shape {
  nodes: number;
  gpusPerNode: number;
  gpusPerRank: number;
  strategy: Strategy;
}

/** Rank-sized, node-aligned GPU blocks ("slots") of a shape. */
const slotCount = (s: Shape): number => (s.nodes * s.gpusPerNode) / s.gpusPerRank;
const slotGpus = (s: Shape, slot: number): number[] => range(s.gpusPerRank, slot * s.gpusPerRank);

const shapeArb: fc.Arbitrary<Shape> = fc
  .record({
    nodes: fc.integer({ min: 1, max: 4 }),
    gpusPerNode: fc.constantFrom(1, 2, 4, 8),
    strategy: fc.constantFrom<Strategy>('colocated', 'disaggregated', 'multiplexed'),
  })
  .chain((s) =>
    fc
      .constantFrom(...[1, 2, 4, 8].filter((width) => width <= s.gpusPerNode))
      .map((gpusPerRank) => ({ ...s, gpusPerRank })),
  )
  // disaggregated needs a GPU outside the rollout ranks; multiplexed needs a rank that stays.
  .filter((s) => s.strategy === 'colocated' || slotCount(s) >= 2);

const layoutInputArb: fc.Arbitrary<LayoutInput> = shapeArb.chain((s) => {
  const slots = range(slotCount(s));
  const all = range(s.nodes * s.gpusPerNode);
  switch (s.strategy) {
    case 'colocated':
      return fc.shuffledSubarray(slots, { minLength: 1 }).map((rolloutSlots) => {
        const rollout = rolloutSlots.flatMap((slot) => slotGpus(s, slot));
        return { ...s, rolloutGpus: rollout, trainGpus: [...rollout].reverse(), asyncRatio: 0 };
      });
    case 'disaggregated':
      return fc.shuffledSubarray(slots, { minLength: 1, maxLength: slots.length - 1 }).chain((rolloutSlots) => {
        const rollout = rolloutSlots.flatMap((slot) => slotGpus(s, slot));
        const rest = all.filter((gpu) => !rollout.includes(gpu));
        return fc
          .tuple(fc.shuffledSubarray(rest, { minLength: 1 }), fc.integer({ min: 0, max: 3 }))
          .map(([train, asyncRatio]) => ({ ...s, rolloutGpus: rollout, trainGpus: train, asyncRatio }));
      });
    case 'multiplexed':
      return fc.shuffledSubarray(slots, { minLength: 2 }).chain((rolloutSlots) =>
        // The train group lies in a proper subset of the rollout ranks ("touched"), so one rank stays.
        fc.shuffledSubarray(rolloutSlots, { minLength: 1, maxLength: rolloutSlots.length - 1 }).chain((touched) => {
          const candidates = touched.flatMap((slot) => slotGpus(s, slot));
          return fc
            .tuple(fc.shuffledSubarray(candidates, { minLength: 1 }), fc.integer({ min: 0, max: 3 }))
            .map(([train, asyncRatio]) => ({
              ...s,
              rolloutGpus: rolloutSlots.flatMap((slot) => slotGpus(s, slot)),
              trainGpus: train,
              asyncRatio,
            }));
        }),
      );
  }
});

const layoutArb: fc.Arbitrary<PoolLayout> = layoutInputArb.map(buildLayout);

const overlapping = (layout: PoolLayout): RankId[] => {
  const train = new Set(layout.trainGpus);
  return layout.ranks.filter((rank) => rank.gpus.some((gpu) => train.has(gpu))).map((rank) => rank.id);
};

describe('(a) layouts', () => {
  it('every layout valid by construction builds, with ranks on one node partitioning the rollout GPUs', () => {
    fc.assert(
      fc.property(layoutInputArb, (input) => {
        const layout = buildLayout(input);
        const sortedRollout = [...input.rolloutGpus].sort((a, b) => a - b);
        expect(layout.ranks.flatMap((rank) => rank.gpus)).toEqual(sortedRollout);
        layout.ranks.forEach((rank, index) => {
          expect(rank.id).toBe(index);
          expect(rank.gpus).toHaveLength(input.gpusPerRank);
          for (const gpu of rank.gpus) expect(Math.floor(gpu / input.gpusPerNode)).toBe(rank.node);
        });
        expect(layout.trainGpus).toEqual([...input.trainGpus].sort((a, b) => a - b));
        expect(layout.shrinkRanks).toEqual(overlapping(layout));
        if (input.strategy === 'colocated') expect(layout.shrinkRanks).toEqual(range(layout.ranks.length));
        if (input.strategy === 'disaggregated') expect(layout.shrinkRanks).toEqual([]);
        if (input.strategy === 'multiplexed') {
          expect(layout.shrinkRanks.length).toBeGreaterThanOrEqual(1);
          expect(layout.shrinkRanks.length).toBeLessThan(layout.ranks.length);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('breaking a rule of a valid layout is refused with a ValidationError', () => {
    fc.assert(
      fc.property(layoutInputArb, fc.nat(), fc.integer({ min: 1, max: 3 }), (input, pick, ratio) => {
        const rollout = input.rolloutGpus;
        const total = input.nodes * input.gpusPerNode;
        const broken: LayoutInput[] = [
          { ...input, rolloutGpus: [...rollout, rollout[pick % rollout.length]!] }, // duplicate
          { ...input, trainGpus: [...input.trainGpus, total] }, // outside the pool
        ];
        if (input.strategy === 'colocated') broken.push({ ...input, asyncRatio: ratio });
        if (input.strategy === 'disaggregated') broken.push({ ...input, trainGpus: [...input.trainGpus, rollout[pick % rollout.length]!] });
        if (input.strategy === 'multiplexed') {
          broken.push({ ...input, trainGpus: rollout });
          // Touch every rank: add the first GPU of each rank to the train group.
          const firsts = rollout.filter((gpu) => gpu % input.gpusPerRank === 0);
          broken.push({ ...input, trainGpus: [...new Set([...input.trainGpus, ...firsts])] });
        }
        for (const bad of broken) expect(attempt(() => buildLayout(bad)), JSON.stringify(bad)).toBeInstanceOf(ValidationError);
      }),
      { numRuns: RUNS },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Transitions against a model
// ---------------------------------------------------------------------------------------------

type MoveKind = 'beginOffload' | 'completeOffload' | 'beginOnload' | 'completeOnload' | 'rejoinRanks';
const MOVES: Record<MoveKind, { from: RankPhase; to: RankPhase; fn: typeof beginOffload }> = {
  beginOffload: { from: 'serving', to: 'offloading', fn: beginOffload },
  completeOffload: { from: 'offloading', to: 'released', fn: completeOffload },
  beginOnload: { from: 'released', to: 'loading', fn: beginOnload },
  completeOnload: { from: 'loading', to: 'serving', fn: completeOnload },
  rejoinRanks: { from: 'lost', to: 'loading', fn: rejoinRanks },
};
const ROLE_OF: Record<RankPhase, GpuRole> = { serving: 'rollout', offloading: 'offloading', released: 'idle', loading: 'loading', lost: 'lost' };

/** How a step picks its ranks: the shrink set, a subset of the ranks in the right phase, any subset, or raw ids. */
type Pick =
  | { mode: 'shrink' }
  | { mode: 'inPhase'; mask: boolean[] }
  | { mode: 'subset'; mask: boolean[] }
  | { mode: 'raw'; ids: number[] };

type Step = { kind: MoveKind; pick: Pick } | { kind: 'markRanksLost'; pick: Pick } | { kind: 'beginTraining' } | { kind: 'endTraining' };

/**
 * A step that makes progress more likely: the runner resolves it, from the model, to one of the
 * steps that has something to act on, over a non-empty subset of the ranks in the right phase.
 */
type Draw = Step | { kind: 'progress'; choice: number; mask: boolean[] };

const maskArb = fc.array(fc.boolean(), { minLength: 1, maxLength: 32 });
const pickArb: fc.Arbitrary<Pick> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ mode: 'shrink' as const }) },
  { weight: 4, arbitrary: fc.record({ mode: fc.constant('inPhase' as const), mask: maskArb }) },
  { weight: 2, arbitrary: fc.record({ mode: fc.constant('subset' as const), mask: maskArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      mode: fc.constant('raw' as const),
      ids: fc.array(fc.oneof(fc.integer({ min: -2, max: 34 }), fc.constant(0.5)), { maxLength: 4 }),
    }),
  },
);
const drawArb: fc.Arbitrary<Draw> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constantFrom<MoveKind>('beginOffload', 'completeOffload', 'beginOnload', 'completeOnload', 'rejoinRanks'), pick: pickArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('markRanksLost' as const), pick: pickArb }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'beginTraining' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'endTraining' as const }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('progress' as const), choice: fc.nat(), mask: maskArb }) },
);

interface PoolModel {
  phases: RankPhase[];
  training: boolean;
}

const cyclicMask = (ids: number[], bits: boolean[]) => ids.filter((_, i) => bits[i % Math.max(1, bits.length)] ?? false);

function ranksFor(layout: PoolLayout, model: PoolModel, kind: MoveKind | 'markRanksLost', pick: Pick): number[] {
  const mask = cyclicMask;
  const all = layout.ranks.map((rank) => rank.id);
  switch (pick.mode) {
    case 'shrink':
      return [...layout.shrinkRanks];
    case 'inPhase':
      return mask(all.filter((rank) => (kind === 'markRanksLost' ? model.phases[rank] !== 'lost' : model.phases[rank] === MOVES[kind].from)), pick.mask);
    case 'subset':
      return mask(all, pick.mask);
    case 'raw':
      return pick.ids;
  }
}

/** The model's verdict: the next model state, or null where the step must be refused. */
function predict(layout: PoolLayout, model: PoolModel, step: Step, ranks: number[]): PoolModel | null {
  const train = new Set(layout.trainGpus);
  if (step.kind === 'beginTraining') {
    const owners = overlapping(layout);
    return !model.training && owners.every((rank) => model.phases[rank] === 'released') ? { ...model, training: true } : null;
  }
  if (step.kind === 'endTraining') return model.training ? { ...model, training: false } : null;
  if (ranks.length === 0 || new Set(ranks).size !== ranks.length) return null;
  if (!ranks.every((rank) => Number.isInteger(rank) && rank >= 0 && rank < layout.ranks.length)) return null;
  const lost = step.kind === 'markRanksLost';
  const to = lost ? 'lost' : MOVES[step.kind].to;
  if (!ranks.every((rank) => (lost ? model.phases[rank] !== 'lost' : model.phases[rank] === MOVES[step.kind as MoveKind].from))) return null;
  if (model.training && ranks.some((rank) => layout.ranks[rank]!.gpus.some((gpu) => train.has(gpu)))) return null;
  const phases = [...model.phases];
  for (const rank of ranks) phases[rank] = to;
  return { ...model, phases };
}

/** Resolves a draw to a concrete step and its ranks. */
function resolve(layout: PoolLayout, model: PoolModel, draw: Draw): { step: Step; ranks: number[] } {
  if (draw.kind === 'beginTraining' || draw.kind === 'endTraining') return { step: draw, ranks: [] };
  if (draw.kind !== 'progress') return { step: draw, ranks: ranksFor(layout, model, draw.kind, draw.pick) };
  // 'progress' never loses ranks: losing them is drawn explicitly, so most runs keep cycling.
  const train = new Set(layout.trainGpus);
  const eligible = (kind: MoveKind) =>
    layout.ranks
      .filter((rank) => model.phases[rank.id] === MOVES[kind].from && !(model.training && rank.gpus.some((gpu) => train.has(gpu))))
      .map((rank) => rank.id);
  const options: { step: Step; ranks: number[] }[] = [];
  for (const kind of Object.keys(MOVES) as MoveKind[]) {
    const ranks = eligible(kind);
    if (ranks.length === 0) continue;
    const chosen = cyclicMask(ranks, draw.mask);
    options.push({ step: { kind, pick: { mode: 'raw', ids: [] } }, ranks: chosen.length > 0 ? chosen : [ranks[0]!] });
  }
  if (predict(layout, model, { kind: 'beginTraining' }, []) !== null) options.push({ step: { kind: 'beginTraining' }, ranks: [] });
  if (model.training) options.push({ step: { kind: 'endTraining' }, ranks: [] });
  return options[draw.choice % options.length]!;
}

function modelState(layout: PoolLayout, model: PoolModel): PoolState {
  const roles: GpuRole[] = range(layout.nodes * layout.gpusPerNode).map(() => 'idle');
  for (const rank of layout.ranks) for (const gpu of rank.gpus) roles[gpu] = ROLE_OF[model.phases[rank.id]!];
  if (model.training) for (const gpu of layout.trainGpus) roles[gpu] = 'training';
  return { roles, rankPhases: [...model.phases] };
}

function applyStep(layout: PoolLayout, state: PoolState, step: Step, ranks: number[]): PoolState {
  if (step.kind === 'beginTraining') return beginTraining(layout, state);
  if (step.kind === 'endTraining') return endTraining(layout, state);
  if (step.kind === 'markRanksLost') return markRanksLost(layout, state, ranks);
  return MOVES[step.kind].fn(layout, state, ranks);
}

/** No GPU both in a serving rank and training; only train GPUs train, and only on released ranks. */
function checkNoServingTraining(layout: PoolLayout, state: PoolState): void {
  const train = new Set(layout.trainGpus);
  for (const rank of layout.ranks) {
    for (const gpu of rank.gpus) {
      if (state.roles[gpu] === 'training') expect(state.rankPhases[rank.id], `GPU ${gpu} trains on rank ${rank.id}`).toBe('released');
      if (state.rankPhases[rank.id] === 'serving') expect(state.roles[gpu]).toBe('rollout');
    }
  }
  state.roles.forEach((role, gpu) => {
    if (role === 'training') expect(train.has(gpu), `GPU ${gpu} trains outside the train group`).toBe(true);
  });
}

describe('(a) transitions', () => {
  it('every step keeps the invariants and matches the model, or is refused leaving the state untouched', () => {
    const tally = { accepted: 0, refused: 0, trained: 0 };
    fc.assert(
      fc.property(layoutArb, fc.array(drawArb, { minLength: 1, maxLength: 40, size: 'max' }), (layout, draws) => {
        let state = initialPoolState(layout);
        let model: PoolModel = { phases: layout.ranks.map(() => 'serving'), training: false };
        expect(state).toEqual(modelState(layout, model));
        for (const draw of draws) {
          const { step, ranks } = resolve(layout, model, draw);
          const expected = predict(layout, model, step, ranks);
          const before = structuredClone(state);
          let next: PoolState | undefined;
          const error = attempt(() => {
            next = applyStep(layout, state, step, ranks);
          });
          expect(state, 'the input state is never modified').toEqual(before);
          if (expected === null) {
            expect(error, `${step.kind} ${JSON.stringify(ranks)} should be refused`).toBeInstanceOf(ValidationError);
            tally.refused += 1;
            continue;
          }
          expect(error, `${step.kind} ${JSON.stringify(ranks)} should be accepted`).toBeUndefined();
          state = next!;
          model = expected;
          tally.accepted += 1;
          if (step.kind === 'beginTraining') tally.trained += 1;
          expect(state).toEqual(modelState(layout, model));
          checkPoolInvariants(layout, state);
          checkNoServingTraining(layout, state);
        }
      }),
      { numRuns: RUNS },
    );
    // The generator reaches both outcomes, and training, often enough to mean something.
    expect(tally.accepted).toBeGreaterThan(RUNS);
    expect(tally.refused).toBeGreaterThan(RUNS);
    expect(tally.trained).toBeGreaterThan(RUNS / 10);
  });

  it('the planned shrink → train → expand cycle is valid for every layout and returns to the start', () => {
    fc.assert(
      fc.property(layoutArb, (layout) => {
        const { release } = planShrink(layout);
        let state = initialPoolState(layout);
        if (release.length > 0) state = completeOffload(layout, beginOffload(layout, state, release), release);
        state = beginTraining(layout, state);
        checkNoServingTraining(layout, state);
        expect(state.roles.filter((role) => role === 'training')).toHaveLength(layout.trainGpus.length);
        state = endTraining(layout, state);
        if (release.length > 0) state = completeOnload(layout, beginOnload(layout, state, release), release);
        expect(state).toEqual(initialPoolState(layout));
      }),
      { numRuns: RUNS },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The sample ledger against a model
// ---------------------------------------------------------------------------------------------

type LedgerOp =
  | { kind: 'admit'; count: number; version: number }
  | { kind: 'assign'; mask: boolean[]; rank: number; reuseLiveShard: boolean; pick: number; extra: number | null }
  | { kind: 'settle'; which: 'live' | 'any' | 'unknown'; pick: number; mask: boolean[]; extra: number | null }
  | { kind: 'seal'; mask: boolean[]; extra: number | null }
  | { kind: 'drop'; mask: boolean[]; reason: string; extra: number | null };

/** An extra id appended to an operation's list, now and then: any id, live or not, maybe a duplicate. */
const extraArb: fc.Arbitrary<number | null> = fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 40 }) });
const ledgerOpArb: fc.Arbitrary<LedgerOp> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('admit' as const), count: fc.integer({ min: -1, max: 5 }), version: fc.integer({ min: 0, max: 3 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('assign' as const),
      mask: maskArb,
      rank: fc.integer({ min: 0, max: 3 }),
      reuseLiveShard: fc.boolean(),
      pick: fc.nat(),
      extra: extraArb,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('settle' as const),
      which: fc.constantFrom<'live' | 'any' | 'unknown'>('live', 'live', 'any', 'unknown'),
      pick: fc.nat(),
      mask: maskArb,
      extra: extraArb,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('seal' as const), mask: maskArb, extra: extraArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('drop' as const),
      mask: maskArb,
      reason: fc.oneof({ weight: 6, arbitrary: fc.constantFrom<string>(...DROP_REASONS) }, { weight: 1, arbitrary: fc.constant('bored') }),
      extra: extraArb,
    }),
  },
);

interface LedgerModel {
  nextId: number;
  live: Map<number, LiveSample>;
  batched: Set<number>;
  dropped: Map<number, DropReason>;
  /** Every shard id ever assigned. */
  shards: string[];
}

const masked = (ids: number[], bits: boolean[]): number[] => ids.filter((_, i) => bits[i] ?? false);
const withExtra = (ids: number[], extra: number | null): number[] => (extra === null ? ids : [...ids, extra]);
const distinct = (ids: number[]): boolean => new Set(ids).size === ids.length;

function liveShards(model: LedgerModel): string[] {
  return [...new Set([...model.live.values()].flatMap((sample) => (sample.shardId === undefined ? [] : [sample.shardId])))].sort();
}

function modelLedger(model: LedgerModel): SampleLedger {
  const dropped: Record<DropReason, number> = { stale: 0, 'environment-timeout': 0, 'max-turns-exceeded': 0 };
  for (const reason of model.dropped.values()) dropped[reason] += 1;
  return {
    nextSampleId: model.nextId,
    live: [...model.live.values()].sort((a, b) => a.id - b.id),
    counters: { admitted: model.nextId, batched: model.batched.size, dropped },
  };
}

/**
 * Applies `op` to the ledger and to the model. Returns whether the model expected success; the
 * caller compares that with what the ledger did.
 */
function runLedgerOp(
  ledger: SampleLedger,
  model: LedgerModel,
  op: LedgerOp,
  freshShard: () => string,
): { expectOk: boolean; run: () => SampleLedger; commit: () => void } {
  const inState = (ids: number[], states: string[]) => ids.every((id) => states.includes(model.live.get(id)?.state ?? 'not live'));
  switch (op.kind) {
    case 'admit': {
      return {
        expectOk: op.count >= 0,
        run: () => admit(ledger, op.count, op.version).ledger,
        commit: () => {
          for (let i = 0; i < op.count; i++) model.live.set(model.nextId + i, { id: model.nextId + i, startVersion: op.version, state: 'waiting' });
          model.nextId += op.count;
        },
      };
    }
    case 'assign': {
      const waiting = [...model.live.values()].filter((s) => s.state === 'waiting').map((s) => s.id);
      const ids = withExtra(masked(waiting, op.mask), op.extra);
      const inUse = liveShards(model);
      const shardId = op.reuseLiveShard && inUse.length > 0 ? inUse[op.pick % inUse.length]! : freshShard();
      return {
        expectOk: distinct(ids) && inState(ids, ['waiting']) && !inUse.includes(shardId),
        run: () => assignToShard(ledger, ids, op.rank, shardId),
        commit: () => {
          model.shards.push(shardId);
          for (const id of ids) Object.assign(model.live.get(id)!, { state: 'running', rank: op.rank, shardId });
        },
      };
    }
    case 'settle': {
      const pool = op.which === 'live' ? liveShards(model) : op.which === 'any' ? model.shards : [];
      const shardId = pool.length > 0 ? pool[op.pick % pool.length]! : `unknown-${op.pick % 5}`;
      const onShard = [...model.live.values()].filter((s) => s.shardId === shardId).map((s) => s.id);
      const unfinished = withExtra(masked(onShard, op.mask), op.extra);
      return {
        expectOk: distinct(unfinished) && unfinished.every((id) => onShard.includes(id)),
        run: () => settleShard(ledger, shardId, unfinished),
        commit: () => {
          for (const id of onShard) {
            const sample = model.live.get(id)!;
            sample.state = unfinished.includes(id) ? 'waiting' : 'completed';
            delete sample.rank;
            delete sample.shardId;
          }
        },
      };
    }
    case 'seal': {
      const candidates = [...model.live.values()].filter((s) => s.state !== 'waiting').map((s) => s.id);
      const ids = withExtra(masked(candidates, op.mask), op.extra);
      return {
        expectOk: distinct(ids) && inState(ids, ['running', 'completed']),
        run: () => sealBatch(ledger, ids),
        commit: () => {
          for (const id of ids) {
            model.live.delete(id);
            model.batched.add(id);
          }
        },
      };
    }
    case 'drop': {
      const candidates = [...model.live.values()].filter((s) => s.state !== 'running').map((s) => s.id);
      const ids = withExtra(masked(candidates, op.mask), op.extra);
      const reason = op.reason as DropReason;
      return {
        expectOk: DROP_REASONS.includes(reason) && distinct(ids) && inState(ids, ['waiting', 'completed']),
        run: () => drop(ledger, ids, reason),
        commit: () => {
          for (const id of ids) {
            model.live.delete(id);
            model.dropped.set(id, reason);
          }
        },
      };
    }
  }
}

describe('(b) sample ledger', () => {
  it('random operation sequences: invariants, conservation, every sample in exactly one place, as the model says', () => {
    const tally = { ok: 0, refused: 0, batched: 0, dropped: 0 };
    fc.assert(
      fc.property(fc.array(ledgerOpArb, { minLength: 1, maxLength: 60, size: 'max' }), (ops) => {
        let ledger = emptyLedger();
        const model: LedgerModel = { nextId: 0, live: new Map(), batched: new Set(), dropped: new Map(), shards: [] };
        let serial = 0;
        for (const op of ops) {
          const { expectOk, run, commit } = runLedgerOp(ledger, model, op, () => `shard-${serial++}`);
          const before = structuredClone(ledger);
          let next: SampleLedger | undefined;
          const error = attempt(() => {
            next = run();
          });
          expect(ledger, 'the input ledger is never modified').toEqual(before);
          if (!expectOk) {
            expect(error, `${JSON.stringify(op)} should be refused`).toBeInstanceOf(ValidationError);
            tally.refused += 1;
            continue;
          }
          expect(error, `${JSON.stringify(op)} should be accepted`).toBeUndefined();
          ledger = next!;
          commit();
          tally.ok += 1;

          // Matches the model exactly.
          expect(ledger).toEqual(modelLedger(model));
          checkLedgerInvariants(ledger);
          // Conservation.
          const { admitted, batched, dropped } = ledger.counters;
          const droppedTotal = Object.values(dropped).reduce((sum, n) => sum + n, 0);
          expect(admitted).toBe(ledger.live.length + batched + droppedTotal);
          // Every admitted id is exactly one of live / batched / dropped.
          const live = new Set(ledger.live.map((s) => s.id));
          expect(live.size).toBe(ledger.live.length);
          for (let id = 0; id < ledger.nextSampleId; id++) {
            const places = Number(live.has(id)) + Number(model.batched.has(id)) + Number(model.dropped.has(id));
            expect(places, `sample ${id}`).toBe(1);
          }
          // Every running sample is on exactly one shard (and one rank); no other sample is on any.
          const onShards = liveShards(model).flatMap((shard) => samplesOnShard(ledger, shard));
          expect(onShards.length).toBe(new Set(onShards).size);
          expect(onShards.sort((a, b) => a - b)).toEqual(ledger.live.filter((s) => s.state === 'running').map((s) => s.id));
          for (const sample of ledger.live) expect(sample.state === 'running').toBe(sample.rank !== undefined && sample.shardId !== undefined);
        }
        tally.batched += model.batched.size;
        tally.dropped += model.dropped.size;
      }),
      { numRuns: RUNS },
    );
    expect(tally.ok).toBeGreaterThan(RUNS * 5);
    expect(tally.refused).toBeGreaterThan(RUNS);
    expect(tally.batched).toBeGreaterThan(RUNS / 2);
    expect(tally.dropped).toBeGreaterThan(RUNS / 2);
  });
});

// ---------------------------------------------------------------------------------------------
// planShrink
// ---------------------------------------------------------------------------------------------

type Override = { mode: 'none' } | { mode: 'superset'; mask: boolean[] } | { mode: 'subset'; mask: boolean[] } | { mode: 'all' } | { mode: 'raw'; ids: number[] };
const overrideArb: fc.Arbitrary<Override> = fc.oneof(
  fc.constant({ mode: 'none' as const }),
  fc.record({ mode: fc.constant('superset' as const), mask: maskArb }),
  fc.record({ mode: fc.constant('subset' as const), mask: maskArb }),
  fc.constant({ mode: 'all' as const }),
  fc.record({ mode: fc.constant('raw' as const), ids: fc.array(fc.integer({ min: -1, max: 33 }), { maxLength: 6 }) }),
);

describe('(c) planShrink', () => {
  it('keeps at least one rank rolling out on a multiplexed pool, for every layout and override', () => {
    fc.assert(
      fc.property(layoutArb, overrideArb, (layout, override) => {
        const all = layout.ranks.map((rank) => rank.id);
        let requested: number[] | undefined;
        if (override.mode === 'superset') requested = [...new Set([...layout.shrinkRanks, ...masked(all, override.mask)])].reverse();
        if (override.mode === 'subset') requested = masked(all, override.mask);
        if (override.mode === 'all') requested = [...all];
        if (override.mode === 'raw') requested = override.ids;

        const valid =
          requested === undefined ||
          (layout.strategy !== 'disaggregated' &&
            requested.length > 0 &&
            distinct(requested) &&
            requested.every((rank) => Number.isInteger(rank) && rank >= 0 && rank < all.length) &&
            layout.shrinkRanks.every((rank) => requested!.includes(rank)) &&
            (layout.strategy !== 'multiplexed' || requested.length < all.length));

        let plan: ReturnType<typeof planShrink> | undefined;
        const error = attempt(() => {
          plan = planShrink(layout, requested);
        });
        if (!valid) {
          expect(error).toBeInstanceOf(ValidationError);
          return;
        }
        expect(error).toBeUndefined();
        const { release, keep } = plan!;
        if (layout.strategy === 'multiplexed') expect(keep.length).toBeGreaterThanOrEqual(1);
        expect(release).toEqual([...(requested ?? layout.shrinkRanks)].sort((a, b) => a - b));
        expect([...release, ...keep].sort((a, b) => a - b)).toEqual(all);
        expect(keep).toEqual(all.filter((rank) => !release.includes(rank)));
        for (const rank of layout.shrinkRanks) expect(release).toContain(rank);
      }),
      { numRuns: RUNS },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------------------------------

/** Distinct rank ids in random order, at least one. */
const targetRanksArb = fc.uniqueArray(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 8 });
const sampleIdsArb = fc.uniqueArray(fc.integer({ min: 0, max: 10_000 }), { maxLength: 60 });

function loadMap(placements: { rank: number; sampleIds: number[] }[], ranks: number[], base: (rank: number) => number): Map<number, number> {
  const loads = new Map(ranks.map((rank) => [rank, base(rank)]));
  for (const p of placements) loads.set(p.rank, (loads.get(p.rank) ?? 0) + p.sampleIds.length);
  return loads;
}

describe('(d) placement', () => {
  it('assignLeastLoaded places every sample once, balances equal loads within 1, ties to the lowest ranks', () => {
    fc.assert(
      fc.property(targetRanksArb, sampleIdsArb, fc.nat(5), (ranks, ids, base) => {
        const placements = assignLeastLoaded(ids, ranks.map((rank) => ({ rank, load: base })));
        expect(placements.flatMap((p) => p.sampleIds).sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
        for (const p of placements) {
          expect(ranks).toContain(p.rank);
          expect(p.sampleIds.length).toBeGreaterThan(0);
        }
        expect(placements.map((p) => p.rank)).toEqual([...placements.map((p) => p.rank)].sort((a, b) => a - b));
        const loads = [...loadMap(placements, ranks, () => base).values()];
        expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(1);
        // Fewer samples than ranks: they go to the lowest rank ids.
        if (ids.length < ranks.length) expect(placements.map((p) => p.rank)).toEqual([...ranks].sort((a, b) => a - b).slice(0, ids.length));
      }),
      { numRuns: RUNS },
    );
  });

  it('assignLeastLoaded with any loads: each receiving rank ends within 1 of the least loaded, whatever the target order', () => {
    fc.assert(
      fc.property(targetRanksArb, sampleIdsArb, fc.array(fc.nat(20), { minLength: 8, maxLength: 8 }), fc.nat(), (ranks, ids, loadValues, seed) => {
        const targets = ranks.map((rank, i) => ({ rank, load: loadValues[i]! }));
        const placements = assignLeastLoaded(ids, targets);
        expect(placements.flatMap((p) => p.sampleIds).sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
        const start = new Map(targets.map((t) => [t.rank, t.load]));
        const final = loadMap(placements, ranks, (rank) => start.get(rank)!);
        const minimum = Math.min(...final.values());
        for (const p of placements) expect(final.get(p.rank)!).toBeLessThanOrEqual(minimum + 1);
        // Deterministic, and independent of the order the targets are listed in.
        const rotated = [...targets.slice(seed % targets.length), ...targets.slice(0, seed % targets.length)];
        expect(assignLeastLoaded(ids, rotated)).toEqual(placements);
      }),
      { numRuns: RUNS },
    );
  });

  const currentArb = fc
    .array(fc.tuple(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 10 })), { maxLength: 8 })
    .map((entries) => {
      // Distinct ranks, each with a run of fresh sample ids.
      let next = 0;
      const seen = new Set<number>();
      return entries
        .filter(([rank]) => !seen.has(rank) && seen.add(rank))
        .map(([rank, count]) => ({ rank, sampleIds: range(count, (next += count) - count) }));
    });

  it('planRebalance places every sample once on a target rank, within capacity, keeping the first ones in place', () => {
    fc.assert(
      fc.property(currentArb, fc.integer({ min: 0, max: 10 }), targetRanksArb, (current, unplacedCount, ranks) => {
        const unplaced = range(unplacedCount, 1000);
        const result = planRebalance(current, unplaced, ranks);
        const all = [...current.flatMap((p) => p.sampleIds), ...unplaced].sort((a, b) => a - b);
        expect(result.flatMap((p) => p.sampleIds).sort((a, b) => a - b)).toEqual(all);
        const capacity = Math.ceil(all.length / ranks.length);
        for (const placement of result) {
          expect(ranks).toContain(placement.rank);
          expect(placement.sampleIds.length).toBeLessThanOrEqual(capacity);
        }
        for (const rank of ranks) {
          const before = current.find((p) => p.rank === rank)?.sampleIds ?? [];
          const after = result.find((p) => p.rank === rank)?.sampleIds ?? [];
          // Affinity: the first min(before, capacity) samples stay, in order, at the front.
          const kept = before.slice(0, capacity);
          expect(after.slice(0, kept.length)).toEqual(kept);
          expect(after.filter((id) => before.includes(id))).toEqual(kept);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('planRebalance from equal loads ends within 1', () => {
    fc.assert(
      fc.property(targetRanksArb, fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 30 }), (ranks, each, unplacedCount) => {
        let next = 0;
        const current = ranks.map((rank) => ({ rank, sampleIds: range(each, (next += each) - each) }));
        const result = planRebalance(current, range(unplacedCount, 1000), ranks);
        expect(result.reduce((n, p) => n + p.sampleIds.length, 0)).toBe(ranks.length * each + unplacedCount);
        const loads = [...loadMap(result, ranks, () => 0).values()];
        expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(1);
      }),
      { numRuns: RUNS },
    );
  });
});
