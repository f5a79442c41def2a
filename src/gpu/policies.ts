/**
 * Scheduling policies beyond the stated rule, as pure functions: which ranks a shrink releases,
 * what an interrupted turn keeps when it moves, and when the shrink is triggered. The
 * discrete-event simulator (src/simulator) measures them against a ROLL-like baseline; the workflows
 * use PIPELINE_POLICY (see docs/design.md §5 and docs/benchmarks.md for the measured gains).
 */
import type { GpuId, PoolLayout, RankId } from './layout';
import type { ShrinkPlan } from './planning';
import { checkIntRange, checkNoDuplicates, checkPostcondition, ValidationError } from '../validation/patterns';

/**
 * What an interrupted turn keeps when its sample moves to another rank (or resumes after a weight
 * sync): 'keep-prefix' resubmits the generated prefix and asks only for the rest (slime, AReaL,
 * verl fully-async, and this project's workflows); 'reissue-turn' discards it and regenerates the
 * whole turn (ROLL's shrink).
 */
export const MIGRATION_POLICIES = ['keep-prefix', 'reissue-turn'] as const;
export type MigrationPolicy = (typeof MIGRATION_POLICIES)[number];

/**
 * Which ranks a shrink releases: 'fixed' the ranks overlapping the configured train group (ROLL,
 * planShrink); 'least-work' the same number of whole ranks with the least in-flight work, the
 * train group following them, which needs a movable train group (trainGroupIsMovable).
 */
export const RELEASE_POLICIES = ['fixed', 'least-work'] as const;
export type ReleasePolicy = (typeof RELEASE_POLICIES)[number];

/**
 * When the shrink starts: 'batch-ready' as soon as a batch is complete (ROLL's get_batch);
 * 'adaptive' once the batch is ready AND the in-flight samples fit the ranks that keep rolling
 * out without slowing each sample below half of its full-pool speed (or a wait cap has passed).
 */
export const TRIGGER_POLICIES = ['batch-ready', 'adaptive'] as const;
export type TriggerPolicy = (typeof TRIGGER_POLICIES)[number];

export interface SchedulingPolicy {
  migration: MigrationPolicy;
  release: ReleasePolicy;
  trigger: TriggerPolicy;
}

/** What the iteration workflow does today. */
export const PIPELINE_POLICY: SchedulingPolicy = { migration: 'keep-prefix', release: 'fixed', trigger: 'batch-ready' };

/** The ROLL-like baseline: fixed overlapping ranks, the interrupted turn regenerated elsewhere. */
export const ROLL_BASELINE_POLICY: SchedulingPolicy = { migration: 'reissue-turn', release: 'fixed', trigger: 'batch-ready' };

/** Tokens of an interrupted turn that its next attempt keeps as prefix. */
export function keptPrefixTokens(policy: MigrationPolicy, partialTokens: number): number {
  checkIntRange('interrupted turn: partial tokens', partialTokens, 0, Number.MAX_SAFE_INTEGER);
  return policy === 'keep-prefix' ? partialTokens : 0;
}

/**
 * The train group can move to other ranks when it is made of whole ranks of equal width in a
 * multiplexed pool (e.g. 128 GPUs = 16 ranks of 8): any equally many ranks could host it.
 */
export function trainGroupIsMovable(layout: PoolLayout): boolean {
  if (layout.strategy !== 'multiplexed' || layout.ranks.length === 0) return false;
  const width = layout.ranks[0]!.gpus.length;
  if (layout.ranks.some((rank) => rank.gpus.length !== width)) return false;
  const covered = layout.shrinkRanks.reduce((sum, id) => sum + layout.ranks[id]!.gpus.length, 0);
  return covered === layout.trainGpus.length;
}

export interface RankWork {
  rank: RankId;
  /** In-flight work that a release would interrupt (e.g. tokens already generated in running turns). */
  work: number;
}

export interface MovableShrinkPlan extends ShrinkPlan {
  /** The GPUs the train group uses for this step: those of the released ranks, ascending. */
  trainGpus: GpuId[];
}

/**
 * 'least-work': releases as many ranks as the train group needs, choosing those with the least
 * in-flight work (ties: lowest rank id), so the fewest partial turns are interrupted.
 */
export function planShrinkByLeastWork(layout: PoolLayout, work: readonly RankWork[]): MovableShrinkPlan {
  if (!trainGroupIsMovable(layout)) {
    throw new ValidationError(
      'VAL_SUBSET',
      'least-work shrink: train group',
      JSON.stringify(layout.trainGpus.length),
      'needs a multiplexed pool whose train group is whole ranks of equal width',
    );
  }
  checkNoDuplicates('least-work shrink: rank work', work, (entry) => entry.rank);
  const byRank = new Map(work.map((entry) => [entry.rank, entry.work]));
  const missing = layout.ranks.filter((rank) => !byRank.has(rank.id)).map((rank) => rank.id);
  checkPostcondition('least-work shrink: work known for every rank', missing.length === 0, () => JSON.stringify(missing));
  const count = layout.shrinkRanks.length;
  const order = layout.ranks.map((rank) => rank.id).sort((a, b) => byRank.get(a)! - byRank.get(b)! || a - b);
  const release = order.slice(0, count).sort((a, b) => a - b);
  const released = new Set(release);
  const keep = layout.ranks.map((rank) => rank.id).filter((id) => !released.has(id));
  const trainGpus = release.flatMap((id) => layout.ranks[id]!.gpus).sort((a, b) => a - b);
  checkPostcondition('least-work shrink: same train group size', trainGpus.length === layout.trainGpus.length, () =>
    JSON.stringify({ trainGpus: trainGpus.length, configured: layout.trainGpus.length }),
  );
  return { release, keep, trainGpus };
}

/** The layout with the train group on other GPUs (for a least-work shrink): same pool, same ranks. */
export function withTrainGroup(layout: PoolLayout, plan: MovableShrinkPlan): PoolLayout {
  return { ...layout, trainGpus: [...plan.trainGpus], shrinkRanks: [...plan.release] };
}

export interface AdaptiveTriggerInput {
  /** Samples running now. */
  running: number;
  /** Ranks that keep rolling out after the shrink. */
  keepRanks: number;
  /** All rollout ranks. */
  allRanks: number;
  /** The cost model's decodeHalfSaturationConcurrency. */
  halfSaturation: number;
  /** Time since the batch was ready (ms) and the cap on waiting (ms). */
  waitedMs: number;
  maxWaitMs: number;
}

/**
 * 'adaptive': shrink once per-sample decode speed on the kept ranks, (running/keep + h)⁻¹, is at
 * least half of the full pool's, (running/all + h)⁻¹, i.e. the migration would not halve every
 * tail sample's speed; or once the wait cap has passed.
 */
export function adaptiveShrinkReady(input: AdaptiveTriggerInput): boolean {
  checkIntRange('adaptive trigger: running samples', input.running, 0, Number.MAX_SAFE_INTEGER);
  checkIntRange('adaptive trigger: kept ranks', input.keepRanks, 1, input.allRanks);
  if (input.waitedMs >= input.maxWaitMs) return true;
  const keptLoad = input.running / input.keepRanks + input.halfSaturation;
  const fullLoad = input.running / input.allRanks + input.halfSaturation;
  return keptLoad <= 2 * fullLoad;
}
