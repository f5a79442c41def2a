/**
 * The iteration program: the phases of one training iteration, for all three strategies, written
 * once over the effects interface (effects.ts). The Temporal iteration workflow and the simulator
 * both run it; they differ only in how an effect is carried out.
 *
 *   rejoin → carry-over → recover from the store (unless the ledger is known exact) → [read the
 *   engines' KV capacity where none reported, awaited before the long-tail admission] → full
 *   rollout until the batch → seal (the manifest beside the shrink's stop; awaited first under
 *   the adaptive trigger) →
 *   [adaptive trigger] → shrink (stop, settle, re-shard) → release + trainer onload (‖ admission
 *   on the kept ranks) → train ‖ long tail → stop (‖ trainer offload) → sync + expand
 *
 * Every transition goes through the pure core (src/gpu) first, so an invalid step throws before
 * any effect reaches a GPU. A failure restores a serving pool (no shard running, trainer
 * offloaded, every rank resident) and raises `IterationFailure` with the phase named.
 * Deterministic; imports nothing from Temporal or Node.
 */
import { ALL_MEMORY_TAGS } from '../engines/memoryTags';
import {
  adaptiveShrinkReady,
  checkLedgerInvariants,
  checkPoolInvariants,
  checkPostcondition,
  planWithLostRanks,
  samplesByState,
  type RankId,
} from '../gpu';
import { beginOffload, beginOnload, beginTraining, completeOffload, completeOnload, endTraining, initialPoolState } from '../gpu/roles';
import type { IterationDecisions, IterationStats, Phase, WeightGroupState } from '../contract/types';
import type { IterationEffects, Step } from './effects';
import {
  adoptRecovered,
  awaitRefill,
  awaitSeal,
  awaitShrinkTrigger,
  beginRefill,
  beginSeal,
  carryOver,
  enterPhase,
  planRelease,
  readMissingKvCapacity,
  rejoin,
  ranksReleasedAtShrink,
  relaunch,
  rolloutUntilBatch,
  setPool,
  stopAndSettle,
} from './operations';
import type { IterationState } from './state';

export interface ProgramResult {
  version: number;
  stats: IterationStats;
  decisions: IterationDecisions;
  /** Broadcast sync: the group left formed for the next iteration (absent: none). */
  weightGroup?: WeightGroupState;
}

/** The program cannot run this iteration at all (the pool lost too much): not retryable. */
export class PoolBelowMinimum extends Error {
  override readonly name = 'PoolBelowMinimum';
}

/** The iteration failed and the pool was restored (or could not be: `restoreProblems`). */
export class IterationFailure extends Error {
  override readonly name = 'IterationFailure';
  constructor(
    readonly phase: Phase,
    override readonly cause: unknown,
    /** Ranks found lost during the attempt (the run goes on without them). */
    readonly lostRanks: RankId[],
    /** Why the pool could not be restored; empty when it was. */
    readonly restoreProblems: string[],
    readonly committedVersion: number | undefined,
  ) {
    super(`iteration failed in phase '${phase}'`);
  }
}

/** Runs one iteration to its end; raises IterationFailure (pool restored) or PoolBelowMinimum. */
export function* runIteration<S>(fx: IterationEffects<S>, st: IterationState): Step<S, ProgramResult> {
  const { layout, lostRanks, shrinkOverride, iteration } = st.input;
  const pool = planWithLostRanks(layout, lostRanks, shrinkOverride);
  if (!pool.viable) throw new PoolBelowMinimum(`iteration ${iteration}: the pool is below the ${layout.strategy} minimum: ${pool.reason}`);
  st.active = pool.active;
  try {
    yield* rejoin(fx, st);
    yield* carryOver(fx, st);
    if (st.input.recoverFromStore) {
      const nextId = st.ledger.nextSampleId;
      adoptRecovered(st, nextId, yield* fx.recoverFromStore({ waiting: waitingIds(st), fromId: nextId }));
    }
    // Ranks without a KV report (a run's first iteration, a returned rank) are read before the
    // first admission, so the KV cap bounds it (docs/design.md §5.2).
    yield* readMissingKvCapacity(fx, st);
    const adaptive = st.input.options.policy.trigger === 'adaptive' && layout.strategy === 'multiplexed';
    // A retried attempt whose batch was already sealed resumes at training.
    if (st.batch === undefined) {
      enterPhase(fx, st, 'rollout');
      const ids = yield* rolloutUntilBatch(fx, st);
      // The adaptive trigger needs the batch's tokens before the shrink: nothing goes out beside.
      beginSeal(fx, st, ids, { besideOtherWork: !adaptive && shrinkWillStopShards(st) });
    }
    if (adaptive) {
      yield* awaitSeal(fx, st);
      yield* adaptiveTrigger(fx, st);
    }
    yield* shrink(fx, st);
    yield* awaitSeal(fx, st);
    yield* releaseAndTrain(fx, st);
    yield* stopAll(fx, st);
    yield* syncAndExpand(fx, st);
    yield* fx.finishSeal({ sampleIds: st.batch!.sampleIds, fromVersion: st.input.fromVersion });
    checkPoolInvariants(st.layout, st.pool);
    checkLedgerInvariants(st.ledger);
  } catch (error) {
    const failedPhase = st.phase;
    const problems = yield* fx.nonCancellable(restoreServingPool(fx, st));
    throw new IterationFailure(failedPhase, error, [...fx.lostRanks()].sort((a, b) => a - b), problems, st.committedVersion);
  }
  enterPhase(fx, st, 'done');
  st.stats.carriedOver = st.ledger.live.length;
  st.stats.endedAtMs = fx.now();
  return { version: st.stats.toVersion, stats: st.stats, decisions: st.decisions, ...(st.weightGroup === undefined ? {} : { weightGroup: st.weightGroup }) };
}

/** Whether the shrink will stop shards (on the configured release set): the manifest then goes out beside that stop. */
function shrinkWillStopShards(st: IterationState): boolean {
  const release = new Set(ranksReleasedAtShrink(st.input));
  return [...st.shards.values()].some((shard) => release.has(shard.rank));
}

function waitingIds(st: IterationState): number[] {
  return st.ledger.live.filter((sample) => sample.state === 'waiting').map((sample) => sample.id);
}

function* adaptiveTrigger<S>(fx: IterationEffects<S>, st: IterationState): Step<S, void> {
  const { layout } = st.input;
  const halfSaturation = st.input.options.adaptive?.halfSaturation ?? 0;
  yield* awaitShrinkTrigger(fx, st, ({ running, waitedMs, maxWaitMs }) =>
    adaptiveShrinkReady({ running, keepRanks: layout.ranks.length - layout.shrinkRanks.length, allRanks: layout.ranks.length, halfSaturation, waitedMs, maxWaitMs }),
  );
}

/**
 * Shrink: stop the released ranks' shards and re-shard their unfinished samples on the kept ranks.
 * The memory release follows in releaseAndTrain (one step with the trainer's onload).
 */
export function* shrink<S>(fx: IterationEffects<S>, st: IterationState): Step<S, void> {
  const { release, keep } = planRelease(fx, st);
  st.release = release;
  st.keep = keep;
  st.decisions.released = [...release];
  if (release.length > 0) setPool(fx, st, beginOffload(st.layout, st.pool, release));
  enterPhase(fx, st, 'shrink');
  let moved: number[] = [];
  if (release.length > 0) {
    const releasedSet = new Set(release);
    moved = yield* stopAndSettle(fx, st, [...st.shards.values()].filter((shard) => releasedSet.has(shard.rank)));
    st.stats.migrated = moved.length;
    st.decisions.migratedIds = [...moved].sort((a, b) => a - b);
  }
  // With the released ranks' unfinished samples go those not launched yet (a batch complete at
  // the iteration's start launches none before the shrink).
  const movedSet = new Set(moved);
  relaunch(fx, st, [...moved, ...samplesByState(st.ledger).waiting.filter((id) => !movedSet.has(id))], keep);
}

/**
 * Train ‖ long tail: the released ranks release their memory and the trainer onloads on the train
 * GPUs (one step) while new samples are admitted on the kept ranks; the trainer steps on the
 * sealed batch as soon as it is onloaded, the admission still going on beside it (awaited at the
 * step's end). A shared trainer's offload starts then and runs alongside the stop of every shard.
 */
export function* releaseAndTrain<S>(fx: IterationEffects<S>, st: IterationState): Step<S, void> {
  // New samples start on the kept ranks only within the staleness bound: the samples still live
  // already fill the next `asyncRatio` batches (the admission policy's bound with the batch sealed).
  // Decided before the onload begins, so a refused decision leaves no onload running unawaited.
  if (st.keep.length > 0 && st.input.asyncRatio >= 1) beginRefill(fx, st, st.keep, { batchSealed: true });
  st.trainerOnloaded = true;
  fx.beginReleaseAndOnloadTrainer(st.release);
  yield* fx.awaitReleaseAndOnloadTrainer();
  if (st.release.length > 0) setPool(fx, st, completeOffload(st.layout, st.pool, st.release));
  setPool(fx, st, beginTraining(st.layout, st.pool));
  enterPhase(fx, st, 'train');
  const { fromVersion, maxTokenLag } = st.input;
  const reached = yield* fx.trainStep({ fromVersion, batchTokens: st.stats.batchTokens, ...(maxTokenLag === undefined ? {} : { maxTokenLag }) });
  const newVersion = fromVersion + 1;
  checkPostcondition('train step: every train node reached the next version', reached.every((version) => version === newVersion), () => JSON.stringify(reached));
  st.committedVersion = newVersion;
  st.stats.toVersion = newVersion;
  yield* awaitRefill(fx, st);
  if (trainerShared(st)) fx.beginTrainerOffload();
}

/** Stop: every shard checkpoints and settles; then the trainer's offload (begun at the step's end) is awaited. */
export function* stopAll<S>(fx: IterationEffects<S>, st: IterationState): Step<S, void> {
  enterPhase(fx, st, 'stop');
  yield* stopAndSettle(fx, st, [...st.shards.values()]);
  if (trainerShared(st)) {
    yield* fx.awaitTrainerOffload();
    st.trainerOnloaded = false;
  }
  setPool(fx, st, endTraining(st.layout, st.pool));
}

/** Weight sync on every rank and expand (the released ranks reload and serve again): one step per node. */
export function* syncAndExpand<S>(fx: IterationEffects<S>, st: IterationState): Step<S, void> {
  const release = st.release;
  enterPhase(fx, st, 'sync');
  if (release.length > 0) setPool(fx, st, beginOnload(st.layout, st.pool, release));
  const { weightSync } = st.input;
  st.weightGroup = yield* fx.syncAndReload({
    ranks: st.active,
    reload: release,
    version: st.stats.toVersion,
    ...(weightSync === undefined ? {} : { broadcast: { spec: weightSync, group: st.weightGroup } }),
  });
  enterPhase(fx, st, 'expand');
  if (release.length > 0) setPool(fx, st, completeOnload(st.layout, st.pool, release));
}

function trainerShared(st: IterationState): boolean {
  return st.layout.shrinkRanks.length > 0;
}

/**
 * Compensation: no shard running, trainer offloaded where it shares GPUs, every rank resident
 * again. Weights are left as they are: the retry re-syncs (idempotent per version). Returns what
 * could not be restored.
 */
export function* restoreServingPool<S>(fx: IterationEffects<S>, st: IterationState): Step<S, string[]> {
  enterPhase(fx, st, 'recovering');
  const problems: string[] = [];
  try {
    // An admission still pending ends first: its shards then run (and are stopped below) or never
    // started. Its failure is no restore problem: the attempt fails anyway, and the failed
    // activity is in the iteration's history.
    yield* awaitRefill(fx, st);
  } catch {
    // Its shards are forgotten (awaitRefill): nothing of it to restore.
  }
  try {
    // So is a manifest still being written: a retry then finds it written, or not at all.
    yield* awaitSeal(fx, st);
  } catch {
    // Not written: the retry rolls out and seals again (the failed activity is in the history).
  }
  try {
    // A failed shard has ended and its samples are settled: not a failure to restore the pool.
    yield* stopAndSettle(fx, st, [...st.shards.values()], true);
  } catch (error) {
    problems.push(`stopping shards: ${describe(error)}`);
  }
  if (trainerShared(st) && st.trainerOnloaded && !fx.trainerNodeLost()) {
    try {
      yield* fx.trainerOffload();
    } catch (error) {
      if (!fx.isLostNode(error)) problems.push(`trainer offload: ${describe(error)}`);
    }
  }
  // Lost ranks are out of the pool: nothing to reload there (a returned rank reloads when it rejoins).
  const lostNow = fx.lostRanks();
  const notServing = st.input.layout.ranks
    .map((rank) => rank.id)
    .filter((rank) => st.pool.rankPhases[rank] !== 'serving' && st.pool.rankPhases[rank] !== 'lost' && !lostNow.has(rank));
  const failures = yield* fx.resumeMemorySettled(notServing, [...ALL_MEMORY_TAGS]);
  if (failures.length === 0) setPool(fx, st, initialPoolState(st.input.layout, [...new Set([...st.input.lostRanks, ...fx.lostRanks()])].sort((a, b) => a - b)));
  else problems.push(`reloading ranks: ${failures.map((failure) => `ranks ${JSON.stringify(failure.ranks)}: ${describe(failure.error)}`).join('; ')}`);
  return problems;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
