/**
 * The named operations of an iteration, each over the state object and the effects. The program
 * (program.ts) strings them together; none holds state of its own.
 */
import { ALL_MEMORY_TAGS } from '../engines/memoryTags';
import {
  adoptSamples,
  admit,
  assignLeastLoaded,
  assignToShards,
  checkIntRange,
  checkLedgerInvariants,
  checkPostcondition,
  drop,
  loadsByRank,
  markCompleted,
  planShrink,
  planShrinkByLeastWork,
  ranksInOrderFreed,
  recordTrainedContexts,
  ranksWithoutKvCapacity,
  rollingKvCapacity,
  samplesByState,
  sealBatch,
  selectBatch,
  settleShards,
  trainGroupIsMovable,
  withTrainGroup,
  type DropReason,
  type PoolState,
  type RankId,
} from '../gpu';
import { completeOnload, rejoinRanks } from '../gpu/roles';
import type { Phase, SealedBatchFigures, ShardOutcome } from '../contract/types';
import type { IterationEffects, ShardRef, Step, StoreRecovery } from './effects';
import type { AdmissionRoomInput } from './admission';
import type { IterationState, ProgramInput } from './state';

/** Ends the current phase (its time goes to the stats) and reports the next. */
export function enterPhase<S>(fx: IterationEffects<S>, st: IterationState, next: Phase): void {
  const now = fx.now();
  st.stats.phaseMs[st.phase] = (st.stats.phaseMs[st.phase] ?? 0) + (now - st.phaseStartedAt);
  st.phase = next;
  st.phaseStartedAt = now;
  const states = samplesByState(st.ledger);
  fx.phaseEntered({
    phase: next,
    pool: st.pool,
    version: st.stats.toVersion,
    samplesRunning: states.running.length,
    samplesCompleted: states.completed.length,
    samplesWaiting: states.waiting.length,
    batchSamples: (st.batch?.sampleIds ?? st.sealing ?? []).length,
  });
}

/** Moves the pool to its next state (computed by a pure transition of src/gpu/roles). */
export function setPool<S>(fx: IterationEffects<S>, st: IterationState, next: PoolState): void {
  st.pool = next;
  fx.poolChanged(next);
}

function countDrops(st: IterationState, reason: string, count: number): void {
  st.stats.dropped[reason] = (st.stats.dropped[reason] ?? 0) + count;
}

/**
 * Places waiting samples least-loaded over `ranks` as new shards; returns them (not started).
 * `finished`: samples the store reported completed while their shard runs on, in completion order.
 */
export function placeShards<S>(fx: IterationEffects<S>, st: IterationState, ids: readonly number[], ranks: readonly RankId[], finished: readonly number[] = []): ShardRef[] {
  if (ids.length === 0 || ranks.length === 0) return [];
  const shards: ShardRef[] = [];
  for (const placement of assignLeastLoaded(ids, loadsByRank(st.ledger, ranks, finished), ranksInOrderFreed(st.ledger, finished))) {
    if (placement.sampleIds.length === 0) continue;
    shards.push({ id: fx.shardId(placement.rank, st.shardSerial++), rank: placement.rank, sampleIds: placement.sampleIds });
  }
  st.ledger = assignToShards(st.ledger, shards);
  for (const shard of shards) st.shards.set(shard.id, shard);
  return shards;
}

/** Places existing waiting samples over `ranks` and starts their shards; returns whether any started. */
export function relaunch<S>(fx: IterationEffects<S>, st: IterationState, ids: readonly number[], ranks: readonly RankId[]): boolean {
  const shards = placeShards(fx, st, ids, ranks);
  if (shards.length > 0) fx.launchShards(shards, st.stats.toVersion);
  return shards.length > 0;
}

/**
 * Admits new samples (version = current weights) onto `ranks`, as many as the admission policy's
 * bound allows before the batch is sealed or after (`batchSealed`); `reported`: samples the store
 * reported completed (those whose shard runs on hold no engine: they count neither as rolling
 * out nor in a rank's load); `behindOtherWork`: work begun just before in this step, which an
 * admission inside the step would hold back: it is begun beside that work and awaited here.
 */
export function* refill<S>(
  fx: IterationEffects<S>,
  st: IterationState,
  ranks: readonly RankId[],
  { batchSealed, behindOtherWork, reported = [] }: { batchSealed: boolean; behindOtherWork: boolean; reported?: readonly number[] },
): Step<S, void> {
  if (behindOtherWork) {
    beginRefill(fx, st, ranks, { batchSealed, reported });
    yield* awaitRefill(fx, st);
    return;
  }
  const placed = placeAdmission(fx, st, ranks, batchSealed, reported);
  if (placed === undefined) return;
  try {
    yield* fx.admitAndLaunch(placed);
  } catch (error) {
    forgetUnstarted(st, placed.shards);
    throw error;
  }
}

/**
 * Begins an admission (refill's) beside other work: its shards start once their records exist.
 * `st.admitting` holds them until awaitRefill, which every path through the program reaches
 * (the pool's restore included).
 */
export function beginRefill<S>(fx: IterationEffects<S>, st: IterationState, ranks: readonly RankId[], { batchSealed, reported = [] }: { batchSealed: boolean; reported?: readonly number[] }): void {
  if (st.admitting !== undefined) throw new Error('beginRefill: an admission is pending already (awaitRefill first)');
  const placed = placeAdmission(fx, st, ranks, batchSealed, reported);
  if (placed === undefined) return;
  st.admitting = placed.shards;
  fx.beginAdmitAndLaunch(placed);
}

/** Waits for the admission begun by beginRefill, if one is pending; raises its failure. */
export function* awaitRefill<S>(fx: IterationEffects<S>, st: IterationState): Step<S, void> {
  const shards = st.admitting;
  if (shards === undefined) return;
  st.admitting = undefined;
  try {
    yield* fx.awaitAdmitAndLaunch();
  } catch (error) {
    forgetUnstarted(st, shards);
    throw error;
  }
}

/** Decides and places an admission (the ledger's and the shards'); undefined when there is no room. */
function placeAdmission<S>(
  fx: IterationEffects<S>,
  st: IterationState,
  ranks: readonly RankId[],
  batchSealed: boolean,
  reported: readonly number[],
): { ids: number[]; version: number; shards: ShardRef[] } | undefined {
  if (ranks.length === 0) return undefined;
  const room = st.input.options.admission.admissionRoom(admissionInput(fx, st, ranks, batchSealed, reportedStillRunning(st, reported)));
  if (room <= 0) return undefined;
  const admitted = admit(st.ledger, room, st.stats.toVersion);
  st.ledger = admitted.ledger;
  st.stats.admitted += admitted.ids.length;
  return { ids: admitted.ids, version: st.stats.toVersion, shards: placeShards(fx, st, admitted.ids, ranks, reported) };
}

/**
 * A failed admission's shards never started: nothing for the pool's restore to stop or settle
 * (their samples may have no record). The attempt fails; its retry admits them again.
 */
function forgetUnstarted(st: IterationState, shards: readonly ShardRef[]): void {
  for (const shard of shards) st.shards.delete(shard.id);
}

function admissionInput<S>(fx: IterationEffects<S>, st: IterationState, ranks: readonly RankId[], batchSealed: boolean, reportedCompleted: number): AdmissionRoomInput {
  const { batchSize, asyncRatio, maxConcurrentSamples, kvCapacityTokensPerRank, maxContextTokens } = st.input;
  const kvCapacityTokens = rollingKvCapacity(ranks, fx.reportedKvCapacity(), kvCapacityTokensPerRank);
  return { ledger: st.ledger, batchSize, asyncRatio, maxConcurrentSamples, batchSealed, reportedCompleted, kvCapacityTokens, ranksRollingOut: ranks.length, maxContextTokens };
}

/** Applies shard outcomes to the ledger; returns the unfinished samples. */
export function settleOutcomes(st: IterationState, outcomes: readonly ShardOutcome[]): number[] {
  const unfinished: number[] = [];
  st.ledger = settleShards(st.ledger, outcomes);
  // The shards' drops, one ledger operation per reason (in the order the reasons first appear).
  const byReason = new Map<string, number[]>();
  for (const outcome of outcomes) {
    for (const { id, reason } of outcome.dropped) {
      const ids = byReason.get(reason);
      if (ids === undefined) byReason.set(reason, [id]);
      else ids.push(id);
    }
    unfinished.push(...outcome.unfinished);
    st.shards.delete(outcome.shardId);
  }
  for (const [reason, ids] of byReason) {
    st.ledger = drop(st.ledger, ids, reason as DropReason);
    countDrops(st, reason, ids.length);
  }
  checkLedgerInvariants(st.ledger);
  return unfinished;
}

/**
 * Stops the shards, waits for their checkpoints and settles them; returns their unfinished
 * samples. A failed shard is raised after settling unless `tolerateFailures`.
 */
export function* stopAndSettle<S>(fx: IterationEffects<S>, st: IterationState, selected: ShardRef[], tolerateFailures = false): Step<S, number[]> {
  if (selected.length === 0) return [];
  const { outcomes, failures } = yield* fx.stopShards({ shards: selected, migration: st.input.options.policy.migration, tolerateFailures });
  const unfinished = settleOutcomes(st, outcomes);
  if (failures.length > 0 && !tolerateFailures) throw failures[0];
  return unfinished;
}

/**
 * Reads the KV capacity of the active ranks whose engines have not reported it (a run's first
 * iteration, a returned rank), before the iteration's first admission, which the KV cap then
 * bounds (before any batch is trained, from rollout.maxTokens).
 */
export function* readMissingKvCapacity<S>(fx: IterationEffects<S>, st: IterationState): Step<S, void> {
  const ranks = ranksWithoutKvCapacity(st.active, fx.reportedKvCapacity(), st.input.kvCapacityTokensPerRank);
  if (ranks.length > 0) yield* fx.readKvCapacity(ranks);
}

/** Returned ranks reload and catch up with the weights before they serve. */
export function* rejoin<S>(fx: IterationEffects<S>, st: IterationState): Step<S, void> {
  const ranks = st.input.rejoinRanks;
  if (ranks.length === 0) return;
  setPool(fx, st, rejoinRanks(st.layout, st.pool, ranks));
  yield* fx.resumeMemory([...ranks], [...ALL_MEMORY_TAGS]);
  yield* fx.syncWeights([...ranks], st.input.fromVersion, st.input.weightSync);
  setPool(fx, st, completeOnload(st.layout, st.pool, ranks));
}

/** Carry-over: drops what the admission policy no longer admits (the stale samples). */
export function* carryOver<S>(fx: IterationEffects<S>, st: IterationState): Step<S, void> {
  const { asyncRatio, fromVersion, options } = st.input;
  const decision = options.admission.carryOver({ ledger: st.ledger, trainVersion: fromVersion, asyncRatio });
  for (const { ids, reason } of decision.drop) {
    if (ids.length === 0) continue;
    st.ledger = drop(st.ledger, ids, reason);
    countDrops(st, reason, ids.length);
    yield* fx.dropSamples(ids, reason);
  }
}

/**
 * Takes in what an earlier attempt or execution of this iteration left in the store: the samples
 * it admitted (same ids), those it finished or dropped, and its sealed batch.
 */
export function adoptRecovered(st: IterationState, nextIdBefore: number, recovery: StoreRecovery): void {
  const { seen } = recovery;
  const fresh = seen.filter((sample) => sample.id >= nextIdBefore);
  st.ledger = adoptSamples(
    st.ledger,
    fresh.map((sample) => ({ id: sample.id, startVersion: sample.startVersion, state: sample.status === 'running' ? ('waiting' as const) : ('completed' as const) })),
  );
  st.stats.admitted += fresh.length;
  const finished = seen.filter((sample) => sample.id < nextIdBefore && sample.status !== 'running').map((sample) => sample.id);
  if (finished.length > 0) st.ledger = markCompleted(st.ledger, finished);
  for (const sample of seen.filter((candidate) => candidate.status === 'dropped')) {
    const reason = (sample.dropReason ?? 'unknown') as DropReason;
    st.ledger = drop(st.ledger, [sample.id], reason);
    countDrops(st, reason, 1);
  }
  if (recovery.sealed !== null) takeBatch(st, recovery.sealed);
}

function takeBatch(st: IterationState, batch: { sampleIds: number[] } & SealedBatchFigures): void {
  st.ledger = sealBatch(st.ledger, batch.sampleIds);
  takeFigures(st, batch);
}

/** The sealed batch's manifest figures: the ledger's trained contexts, the stats, the batch. */
function takeFigures(st: IterationState, batch: { sampleIds: number[] } & SealedBatchFigures): void {
  if (batch.totalTokensSquared !== undefined) {
    st.ledger = recordTrainedContexts(st.ledger, batch.sampleIds.length, { tokens: batch.totalTokens, squaredTokens: batch.totalTokensSquared });
  }
  st.batch = batch;
  st.stats.batchSamples = batch.sampleIds.length;
  st.stats.batchTokens = batch.totalTokens;
  // The version lag of the batch's tokens (status and progress), where the store recorded versions.
  if (batch.tokenLags !== undefined) st.stats.tokenLags = batch.tokenLags;
  st.decisions.batchIds = [...batch.sampleIds];
}

/**
 * Full rollout until the batch threshold: waiting samples go out least-loaded, new ones are
 * admitted, and admitted again at the admission policy's points as samples complete; if every
 * shard ends before enough complete, the shards are settled, more samples admitted, and the wait
 * repeats. Returns the selected batch.
 */
export function* rolloutUntilBatch<S>(fx: IterationEffects<S>, st: IterationState): Step<S, number[]> {
  const { batchSize } = st.input;
  // Samples that completed after the last batch may fill this one already: train at once, and
  // launch nothing on ranks the shrink would stop again (their waiting samples go out at shrink).
  const carried = samplesByState(st.ledger);
  if (carried.completed.length >= batchSize) return selectBatch(st.ledger, carried.completed, batchSize);
  const launched = relaunch(fx, st, carried.waiting, st.active);
  yield* refill(fx, st, st.active, { batchSealed: false, behindOtherWork: launched });
  let reported: number[] = [];
  for (;;) {
    const states = samplesByState(st.ledger);
    const candidates = [...states.running, ...states.completed];
    checkPostcondition('batch threshold: enough live samples to fill a batch', st.shards.size > 0 || candidates.length >= batchSize, () =>
      JSON.stringify({ candidates: candidates.length, batchSize }),
    );
    const wakeAt = admissionPointNow(fx, st, reported, states.completed.length);
    const completed = yield* fx.awaitBatch({ candidates, batchSize: wakeAt });
    if (completed !== undefined && completed.length >= batchSize) return selectBatch(st.ledger, completed, batchSize);
    if (completed !== undefined) {
      reported = completed;
      yield* refill(fx, st, st.active, { batchSealed: false, behindOtherWork: false, reported });
      continue;
    }
    reported = [];
    yield* stopAndSettle(fx, st, [...st.shards.values()]);
    const relaunched = relaunch(fx, st, samplesByState(st.ledger).waiting, st.active);
    yield* refill(fx, st, st.active, { batchSealed: false, behindOtherWork: relaunched });
  }
}

/** The completed-candidate count at which to admit again (the batch size: only when the batch is ready). */
function admissionPointNow<S>(fx: IterationEffects<S>, st: IterationState, reported: readonly number[], settledCompleted: number): number {
  const reportedCompleted = reportedStillRunning(st, reported);
  const point = st.input.options.admission.admissionPoint({ ...admissionInput(fx, st, st.active, false, reportedCompleted), completed: settledCompleted + reportedCompleted });
  return checkIntRange('admission point', point, 1, st.input.batchSize);
}

/** Of the samples the store reported completed, those the ledger still has running (their shard runs on). */
function reportedStillRunning(st: IterationState, reported: readonly number[]): number {
  const running = new Set(samplesByState(st.ledger).running);
  return reported.filter((id) => running.has(id)).length;
}

/**
 * Seals the batch in the ledger and begins its manifest in the store (the figures training and
 * the admission's KV cap need); `besideOtherWork`: the shrink's stop goes out beside it.
 * awaitSeal takes the figures.
 */
export function beginSeal<S>(fx: IterationEffects<S>, st: IterationState, ids: number[], { besideOtherWork }: { besideOtherWork: boolean }): void {
  if (st.sealing !== undefined) throw new Error('beginSeal: a manifest is pending already (awaitSeal first)');
  st.ledger = sealBatch(st.ledger, ids);
  st.sealing = ids;
  fx.beginSealBatch({ sampleIds: ids, fromVersion: st.input.fromVersion, besideOtherWork });
}

/** Waits for the manifest begun by beginSeal, if one is pending, and takes its figures; raises its failure. */
export function* awaitSeal<S>(fx: IterationEffects<S>, st: IterationState): Step<S, void> {
  const ids = st.sealing;
  if (ids === undefined) return;
  st.sealing = undefined;
  const figures = yield* fx.awaitSealBatch();
  takeFigures(st, { sampleIds: ids, ...figures });
}

/** The 'adaptive' trigger: waits while a shrink would overload the ranks that keep rolling out. */
export function* awaitShrinkTrigger<S>(fx: IterationEffects<S>, st: IterationState, ready: (input: { running: number; waitedMs: number; maxWaitMs: number }) => boolean): Step<S, void> {
  const adaptive = st.input.options.adaptive;
  if (adaptive === undefined) throw new Error("the 'adaptive' shrink trigger needs ProgramOptions.adaptive (its cost-model parameters)");
  const readyAt = fx.now();
  const maxWaitMs = adaptive.maxWaitMs(st.stats.batchTokens);
  while (!ready({ running: fx.runningSamples(), waitedMs: fx.now() - readyAt, maxWaitMs })) yield* fx.sleep(adaptive.pollMs);
}

/**
 * The ranks the shrink stops under the configured release set (every policy but least-work,
 * which chooses at the shrink): shards placed together on one node that are all in it, or all
 * out of it, are always stopped together.
 */
export function ranksReleasedAtShrink(input: Pick<ProgramInput, 'layout' | 'shrinkOverride'>): RankId[] {
  return planShrink(input.layout, input.shrinkOverride).release;
}

/** Which ranks this shrink releases, under the release policy (the train group moves only where it may). */
export function planRelease<S>(fx: IterationEffects<S>, st: IterationState): { release: RankId[]; keep: RankId[] } {
  const { layout, lostRanks, shrinkOverride, options } = st.input;
  if (options.policy.release === 'least-work' && lostRanks.length === 0 && shrinkOverride === undefined && trainGroupIsMovable(layout)) {
    const plan = planShrinkByLeastWork(layout, fx.inFlightWork(st.active));
    st.layout = withTrainGroup(layout, plan);
    return { release: plan.release, keep: plan.keep };
  }
  if (lostRanks.length > 0) {
    const lost = new Set(lostRanks);
    const plan = planShrink(layout, shrinkOverride);
    return { release: plan.release.filter((rank) => !lost.has(rank)), keep: plan.keep.filter((rank) => !lost.has(rank)) };
  }
  return planShrink(layout, shrinkOverride);
}
