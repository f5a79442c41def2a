/**
 * One training iteration as a durable workflow. The same flow serves all three strategies;
 * they differ only in the plan (which ranks are released, whether the trainer is shared):
 *
 *   full rollout on every rank → batch threshold → shrink (stop the released ranks' shards,
 *   re-shard their unfinished samples, offload) → train ‖ long tail → stop all shards →
 *   weight sync → expand.
 *
 * Every transition goes through the pure core (src/gpu) first, so an invalid step throws before
 * anything is sent to a GPU. A failure before the new weights are synced restores a consistent
 * pool (every rank resident, no shard running, trainer offloaded) and fails the attempt, visibly;
 * the retry resumes from the store (a sealed batch goes straight to training).
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { TimeoutType, type RetryPolicy } from '@temporalio/common';
import { ALL_MEMORY_TAGS, type MemoryTag } from '../engines/types';
import { rankById, ranksOnNode, trainNodes, type RankId } from '../gpu/layout';
import { planWithLostRanks } from '../gpu/lost';
import {
  admit,
  adoptSamples,
  markCompleted,
  assignLeastLoaded,
  assignToShard,
  checkLedgerInvariants,
  drop,
  loadsByRank,
  planShrink,
  samplesByState,
  sealBatch,
  selectBatch,
  settleShard,
  staleIds,
  type DropReason,
  type SampleLedger,
} from '../gpu';
import {
  beginOffload,
  beginOnload,
  beginTraining,
  checkPoolInvariants,
  completeOffload,
  completeOnload,
  endTraining,
  initialPoolState,
  rejoinRanks,
  type PoolState,
} from '../gpu/roles';
import { checkPostcondition } from '../gpu/validation';
import type { GpuNodeActivities, OrchestratorActivities } from '../pipeline/activities';
import { orchestratorQueue, rankQueue, shardId, trainerQueue } from '../pipeline/naming';
import type { IterationInput, IterationProgress, IterationResult, IterationStats, Phase, ShardOutcome } from '../pipeline/types';
import { describeError } from '../pipeline/errors';
import { PHASE_KEY } from '../temporal/searchAttributes';
import { iterationProgressSignal, LOST_RANKS_PATCH } from './signals';
import { assertDecoded } from '../temporal/payloadConverter';

interface RunningShard {
  id: string;
  rank: RankId;
  sampleIds: number[];
  scope: CancellationScope;
  /** Settles when the activity ends: completed, cancelled (after checkpointing) or failed. */
  ended: Promise<unknown>;
  /** Set once `ended` has settled: such a shard needs no stop. */
  done: boolean;
}

export async function iterationWorkflow(input: IterationInput): Promise<IterationResult> {
  assertDecoded('iteration workflow input', input);
  const { spec, iteration } = input;
  const { layout } = spec;
  const info = workflowInfo();
  const attempt = info.attempt;
  // Unique per execution (attempts and operator resumes alike): fences earlier shards out of the store.
  const executionTag = info.runId.slice(0, 8);
  const fromVersion = input.version;
  const heartbeatTimeout = spec.heartbeatTimeoutMs;
  const retry: RetryPolicy = {
    initialInterval: spec.activityRetry.initialIntervalMs,
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    maximumAttempts: spec.activityRetry.maximumAttempts,
  };
  // Lost-node detection: an activity on a rank or trainer queue that no worker picks up within
  // the lost-node timeout marks the node's ranks lost. Guarded by a patch so that iterations
  // recorded before it replay their old path (docs/design.md §5.2).
  const lostNodeTimeoutMs = patched(LOST_RANKS_PATCH) ? spec.lostNodeTimeoutMs : undefined;
  const nodeTimeouts = lostNodeTimeoutMs === undefined ? {} : { scheduleToStartTimeout: lostNodeTimeoutMs };
  // Errors no retry can fix (NON_RETRYABLE_ERROR_TYPES) fail their activity for good at the
  // source (src/activities/failFast.ts): the retry policies stay short in every history event.

  const orchestrator = proxyActivities<OrchestratorActivities>({
    taskQueue: orchestratorQueue(spec.taskQueuePrefix),
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout,
    retry,
  });
  const batchWatcher = proxyActivities<OrchestratorActivities>({
    taskQueue: orchestratorQueue(spec.taskQueuePrefix),
    startToCloseTimeout: '7 days',
    heartbeatTimeout,
    retry,
  });
  const rankActivities = (rank: RankId) =>
    proxyActivities<GpuNodeActivities>({
      taskQueue: rankQueue(spec.taskQueuePrefix, rank),
      startToCloseTimeout: '30 minutes',
      heartbeatTimeout,
      ...nodeTimeouts,
      retry,
    });
  const shardActivities = (rank: RankId) =>
    proxyActivities<GpuNodeActivities>({
      taskQueue: rankQueue(spec.taskQueuePrefix, rank),
      startToCloseTimeout: '7 days',
      heartbeatTimeout,
      ...nodeTimeouts,
      // Wait for the shard to checkpoint its samples before the workflow moves them elsewhere:
      // this is what makes a re-shard exact-once.
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      retry: { ...retry, maximumAttempts: Math.max(20, spec.activityRetry.maximumAttempts) },
    });
  const trainerActivities = (node: number) =>
    proxyActivities<GpuNodeActivities>({
      taskQueue: trainerQueue(spec.taskQueuePrefix, node),
      startToCloseTimeout: '2 hours',
      heartbeatTimeout,
      ...nodeTimeouts,
      retry,
    });

  const lostRanks = input.lostRanks ?? [];
  const rejoining = input.rejoinRanks ?? [];
  /** Ranks found lost during this attempt (every rank of a node that stopped taking activities). */
  const lostNow = new Set<RankId>();
  let trainerNodeLost: number | undefined;
  // A rank or trainer activity that no worker picked up within the lost-node timeout has no live
  // worker behind it.
  const isLostNode = (error: unknown): boolean =>
    lostNodeTimeoutMs !== undefined &&
    error instanceof ActivityFailure &&
    error.cause instanceof TimeoutFailure &&
    error.cause.timeoutType === TimeoutType.SCHEDULE_TO_START;
  // A shard whose worker died after we asked it to stop ends on its heartbeat timeout (Temporal
  // does not retry an activity whose cancellation was requested). Its samples are in the store at
  // their last checkpoint, and the store fences the dead shard out once they are claimed again:
  // settle it like a cancelled one instead of failing the iteration (found by the soak).
  const diedWhileStopping = (error: unknown): boolean =>
    lostNodeTimeoutMs !== undefined &&
    error instanceof ActivityFailure &&
    error.cause instanceof TimeoutFailure &&
    error.cause.timeoutType === TimeoutType.HEARTBEAT;
  const onRank = <T>(rank: RankId, call: Promise<T>): Promise<T> =>
    call.catch((error: unknown) => {
      if (isLostNode(error)) for (const sibling of ranksOnNode(layout, rankById(layout, rank).node)) lostNow.add(sibling.id);
      throw error;
    });
  const onTrainerNode = <T>(node: number, call: Promise<T>): Promise<T> =>
    call.catch((error: unknown) => {
      if (isLostNode(error)) {
        trainerNodeLost = node;
        for (const rank of ranksOnNode(layout, node)) lostNow.add(rank.id);
      }
      throw error;
    });

  let ledger: SampleLedger = input.ledger;
  let pool: PoolState = initialPoolState(layout, [...lostRanks, ...rejoining]);
  let phase: Phase = 'starting';
  let phaseStartedAt = Date.now();
  let batchSampleCount = 0;
  let shardSerial = 0;
  const shards = new Map<string, RunningShard>();
  const stats: IterationStats = {
    iteration,
    fromVersion,
    toVersion: fromVersion,
    batchSamples: 0,
    batchTokens: 0,
    admitted: 0,
    migrated: 0,
    dropped: {},
    carriedOver: 0,
    startedAtMs: Date.now(),
    endedAtMs: 0,
    phaseMs: {},
  };

  const parent = info.parent;
  // Progress is advisory (the run's status view): sending it must not hold up the transition.
  // Awaiting each signal cost one server round trip (~150 ms) per phase on the critical path.
  const progressNotAwaited = patched('progress-signal-not-awaited');
  let progressSequence = 0;
  const enterPhase = async (next: Phase): Promise<void> => {
    const now = Date.now();
    stats.phaseMs[phase] = (stats.phaseMs[phase] ?? 0) + (now - phaseStartedAt);
    phase = next;
    phaseStartedAt = now;
    upsertSearchAttributes([{ key: PHASE_KEY, value: next }]);
    if (parent !== undefined) {
      const states = samplesByState(ledger);
      const progress: IterationProgress = {
        iteration,
        phase: next,
        pool,
        version: stats.toVersion,
        samplesRunning: states.running.length,
        samplesCompleted: states.completed.length,
        samplesWaiting: states.waiting.length,
        batchSamples: batchSampleCount,
        // Ordered across attempts and executions (an operator resume or a lost-node retry starts a
        // new execution at attempt 1): a later execution's reports supersede earlier ones.
        sequence: info.runStartTime.getTime() * 1_000 + progressSequence++,
        ...(input.progressToken === undefined ? {} : { token: input.progressToken }),
      };
      const handle = getExternalWorkflowHandle(parent.workflowId, parent.runId);
      if (!progressNotAwaited) return handle.signal(iterationProgressSignal, progress);
      // The run learns that the iteration is done from its result: no signal for 'done'.
      if (next === 'done') return;
      handle.signal(iterationProgressSignal, progress).catch((error: unknown) => log.warn(`iteration ${iteration}: progress signal for phase '${next}' not delivered: ${describeError(error)}`));
    }
  };

  const recordDrops = (outcome: ShardOutcome): void => {
    const byReason = new Map<string, number[]>();
    for (const { id, reason } of outcome.dropped) byReason.set(reason, [...(byReason.get(reason) ?? []), id]);
    for (const [reason, ids] of byReason) {
      ledger = drop(ledger, ids, reason as DropReason);
      stats.dropped[reason] = (stats.dropped[reason] ?? 0) + ids.length;
    }
  };

  const launchShard = (rank: RankId, sampleIds: number[]): void => {
    if (sampleIds.length === 0) return;
    const id = shardId(iteration, executionTag, rank, shardSerial++);
    ledger = assignToShard(ledger, sampleIds, rank, id);
    const scope = new CancellationScope();
    const ended = scope.run(() =>
      onRank(rank, shardActivities(rank).runRolloutShard({
        runId: spec.runId,
        shardId: id,
        rank,
        sampleIds,
        version: stats.toVersion,
        maxTurns: spec.maxTurns,
        maxTokens: spec.maxTokens,
        environmentTimeoutMs: spec.environmentTimeoutMs,
      })),
    );
    const shard: RunningShard = { id, rank, sampleIds, scope, ended, done: false };
    // Observed later (stopShards / shardFailure); mark handled so an early rejection is not unhandled.
    ended.then(
      () => (shard.done = true),
      () => (shard.done = true),
    );
    shards.set(id, shard);
  };

  /** Rejects as soon as any running shard fails for a reason other than our own cancellation. */
  const shardFailure = (): Promise<never> =>
    new Promise<never>((_, reject) => {
      for (const shard of shards.values()) {
        shard.ended.catch((error: unknown) => {
          if (!isCancellation(error)) reject(error);
        });
      }
    });

  /**
   * Runs `work` in its own scope unless a shard fails first (then the failure is raised). The
   * scope is cancelled once the race is decided, so nothing `work` started outlives it.
   */
  const unlessShardFails = async <T>(work: () => Promise<T>): Promise<T> => {
    const scope = new CancellationScope();
    const running = scope.run(work);
    running.catch(() => undefined);
    try {
      return await Promise.race([running, shardFailure()]);
    } finally {
      scope.cancel();
    }
  };

  // Cancellation reaches a shard with its next heartbeat (0.2-0.4 s); a stop activity on its
  // node's worker reaches it in one activity round trip. The cancellation stays as the fallback
  // for a shard the worker is not running (not started yet, or between retries).
  const directStop = patched('direct-shard-stop');
  // The direct stop goes to shards still running only: one to an ended shard was a wasted activity,
  // and one to a lost node held the restore for its whole timeout.
  const stopRunningOnly = directStop && patched('direct-stop-running-only');
  const stopperOn = (rank: RankId) =>
    proxyActivities<GpuNodeActivities>({
      taskQueue: rankQueue(spec.taskQueuePrefix, rank),
      // Best effort: a node that does not answer soon is left to the cancellation.
      scheduleToCloseTimeout: heartbeatTimeout,
      retry: { maximumAttempts: 1 },
    });
  const nodeOfRank = new Map(layout.ranks.map((rank) => [rank.id, rank.node]));
  /** Groups items by the node of their rank (one activity per node instead of one per rank). */
  const groupByNode = <T>(items: readonly T[], rankOf: (item: T) => RankId): Map<number, T[]> => {
    const byNode = new Map<number, T[]>();
    for (const item of items) {
      const node = nodeOfRank.get(rankOf(item));
      if (node === undefined) throw ApplicationFailure.nonRetryable(`rank ${rankOf(item)} is not in the layout`);
      byNode.set(node, [...(byNode.get(node) ?? []), item]);
    }
    return byNode;
  };
  const requestDirectStop = (selected: RunningShard[]): Promise<void> => {
    const byNode = groupByNode(selected, (shard) => shard.rank);
    const stops = [...byNode.entries()].map(([node, onNode]) =>
      stopperOn(onNode[0]!.rank)
        .stopShards({ runId: spec.runId, shardIds: onNode.map((shard) => shard.id) })
        .then(
          () => undefined,
          // Not fatal: the cancellation request still stops the shards, one heartbeat later.
          (error: unknown) => log.warn(`iteration ${iteration}: direct stop of shards on node ${node} failed, relying on cancellation: ${describeError(error)}`),
        ),
    );
    return Promise.all(stops).then(() => undefined);
  };

  // Memory and weight operations go to each node once for all its ranks (per rank before). Each
  // call goes through onRank, so a node that takes no activity marks all its ranks lost.
  const perNode = patched('per-node-memory-and-sync');
  const nodeGroups = (ranks: readonly RankId[]): RankId[][] => (perNode ? [...groupByNode(ranks, (rank) => rank).values()] : ranks.map((rank) => [rank]));
  const releaseGroup = (group: RankId[], tags: MemoryTag[]): Promise<void> =>
    onRank(group[0]!, perNode ? rankActivities(group[0]!).releaseNodeMemory({ runId: spec.runId, ranks: group, tags }) : rankActivities(group[0]!).releaseRankMemory({ runId: spec.runId, rank: group[0]!, tags }));
  const resumeGroup = (group: RankId[], tags: MemoryTag[]): Promise<void> =>
    onRank(group[0]!, perNode ? rankActivities(group[0]!).resumeNodeMemory({ runId: spec.runId, ranks: group, tags }) : rankActivities(group[0]!).resumeRankMemory({ runId: spec.runId, rank: group[0]!, tags }));
  const syncGroup = (group: RankId[], version: number): Promise<void> =>
    onRank(group[0]!, perNode ? rankActivities(group[0]!).syncNodeWeights({ runId: spec.runId, ranks: group, version }) : rankActivities(group[0]!).syncRankWeights({ runId: spec.runId, rank: group[0]!, version }));
  const releaseMemory = (ranks: readonly RankId[], tags: MemoryTag[]): Promise<unknown> => Promise.all(nodeGroups(ranks).map((group) => releaseGroup(group, tags)));
  const resumeMemory = (ranks: readonly RankId[], tags: MemoryTag[]): Promise<unknown> => Promise.all(nodeGroups(ranks).map((group) => resumeGroup(group, tags)));
  const syncWeights = (ranks: readonly RankId[], version: number): Promise<unknown> => Promise.all(nodeGroups(ranks).map((group) => syncGroup(group, version)));

  /**
   * Cancels the shards, waits for their checkpoints, and settles their samples in the ledger.
   * A shard that failed is raised after settling, unless `onShardFailure` takes it. A shard whose
   * worker died after it was asked to stop is settled from the store like a cancelled one.
   */
  const stopShards = async (selected: RunningShard[], onShardFailure?: (error: unknown) => void): Promise<number[]> => {
    for (const shard of selected) shard.scope.cancel();
    const toStop = stopRunningOnly ? selected.filter((shard) => !shard.done) : selected;
    const stopping = directStop && toStop.length > 0 ? requestDirectStop(toStop) : Promise.resolve();
    const failures: unknown[] = [];
    for (const shard of selected) {
      try {
        await shard.ended;
      } catch (error) {
        if (!isCancellation(error) && !diedWhileStopping(error)) failures.push(error);
      }
    }
    await stopping;
    if (selected.length === 0) return [];
    const outcomes = await orchestrator.settleShards({
      runId: spec.runId,
      shards: selected.map((shard) => ({ shardId: shard.id, sampleIds: shard.sampleIds })),
    });
    const unfinished: number[] = [];
    for (const outcome of outcomes) {
      ledger = settleShard(ledger, outcome.shardId, outcome.unfinished);
      recordDrops(outcome);
      unfinished.push(...outcome.unfinished);
      shards.delete(outcome.shardId);
    }
    checkLedgerInvariants(ledger);
    if (onShardFailure !== undefined) failures.forEach(onShardFailure);
    else if (failures.length > 0) throw failures[0];
    return unfinished;
  };

  /** Admits new samples (version = current weights) until `target` samples are live, onto `ranks`. */
  const refill = async (ranks: RankId[], target: number): Promise<void> => {
    if (ranks.length === 0) return;
    const live = ledger.live.length;
    const room = target - live;
    if (room <= 0) return;
    const admitted = admit(ledger, room, stats.toVersion);
    ledger = admitted.ledger;
    stats.admitted += admitted.ids.length;
    await orchestrator.admitSamples({ runId: spec.runId, ids: admitted.ids, version: stats.toVersion });
    for (const placement of assignLeastLoaded(admitted.ids, loadsByRank(ledger, ranks))) launchShard(placement.rank, placement.sampleIds);
  };

  const trainerNodes = trainNodes(layout);
  const trainerShared = layout.shrinkRanks.length > 0;
  // The ranks in the pool this iteration: all but the lost ones (the run pauses before starting
  // an iteration the strategy cannot run without them, so this plan is viable).
  const plan = lostRanks.length === 0 ? { viable: true as const, ...planShrink(layout, input.shrinkOverride), active: layout.ranks.map((rank) => rank.id) } : planWithLostRanks(layout, lostRanks, input.shrinkOverride);
  if (!plan.viable) throw ApplicationFailure.nonRetryable(`iteration ${iteration}: the pool is below the ${layout.strategy} minimum: ${plan.reason}`, 'PoolBelowMinimum');
  const { release, keep, active: allRanks } = plan;
  let trainerOnloaded = false;
  let committedVersion: number | undefined;

  try {
    // ---- returned ranks reload and catch up with the weights before serving --------------------
    if (rejoining.length > 0) {
      pool = rejoinRanks(layout, pool, rejoining);
      await Promise.all(rejoining.map((rank) => onRank(rank, rankActivities(rank).resumeRankMemory({ runId: spec.runId, rank, tags: [...ALL_MEMORY_TAGS] }))));
      await Promise.all(rejoining.map((rank) => onRank(rank, rankActivities(rank).syncRankWeights({ runId: spec.runId, rank, version: fromVersion }))));
      pool = completeOnload(layout, pool, rejoining);
    }

    // ---- 0. carry-over: drop what the async ratio no longer admits ----------------------------
    const stale = staleIds(ledger, fromVersion, spec.asyncRatio);
    if (stale.length > 0) {
      ledger = drop(ledger, stale, 'stale');
      stats.dropped.stale = stale.length;
      await orchestrator.dropSamples({ runId: spec.runId, ids: stale, reason: 'stale' });
    }

    // An iteration that ran before (a failed attempt or execution) left samples in the store:
    // take in what it admitted (same ids, same records) and what it finished, and if it already
    // sealed the batch, resume at training.
    // Always, not only when attempt > 1: after a failed iteration is resumed by the operator its
    // new execution starts again at attempt 1. Costs one store read per iteration.
    // Both store reads are independent: issued together they cost one workflow round trip, not two.
    // (The same patch seals the batch in two steps, see below.)
    const overlapped = patched('overlap-store-reads-and-seal');
    const nextId = ledger.nextSampleId;
    const describing = orchestrator.describeSamples({ runId: spec.runId, ids: samplesByState(ledger).waiting, fromId: nextId });
    const readingSealed = overlapped ? orchestrator.readSealedBatch({ runId: spec.runId, iteration }) : undefined;
    readingSealed?.catch(() => undefined); // observed below, after describeSamples
    {
      const seen = await describing;
      const fresh = seen.filter((sample) => sample.id >= nextId);
      ledger = adoptSamples(
        ledger,
        fresh.map((sample) => ({ id: sample.id, startVersion: sample.startVersion, state: sample.status === 'running' ? 'waiting' : 'completed' })),
      );
      stats.admitted += fresh.length;
      const finished = seen.filter((sample) => sample.id < nextId && sample.status !== 'running').map((sample) => sample.id);
      if (finished.length > 0) ledger = markCompleted(ledger, finished);
      for (const sample of seen.filter((candidate) => candidate.status === 'dropped')) {
        const reason = (sample.dropReason ?? 'unknown') as DropReason;
        ledger = drop(ledger, [sample.id], reason);
        stats.dropped[reason] = (stats.dropped[reason] ?? 0) + 1;
      }
    }
    // A retried attempt whose batch was already sealed resumes at training.
    const sealed = await (readingSealed ?? orchestrator.readSealedBatch({ runId: spec.runId, iteration }));
    let batch: { sampleIds: number[]; totalTokens: number };
    if (sealed !== null) {
      batch = sealed;
      ledger = sealBatch(ledger, sealed.sampleIds);
    } else {
      // ---- 1. full rollout until the batch threshold -------------------------------------------
      await enterPhase('rollout');
      const waiting = samplesByState(ledger).waiting;
      for (const placement of assignLeastLoaded(waiting, loadsByRank(ledger, allRanks))) launchShard(placement.rank, placement.sampleIds);
      await refill(allRanks, spec.maxConcurrentSamples);
      let ready: number[] | undefined;
      while (ready === undefined) {
        const states = samplesByState(ledger);
        const candidates = [...states.running, ...states.completed];
        // If every shard ends first (their samples completed or dropped) and there are still too
        // few completions, settle the shards, top up with new samples and wait again.
        checkPostcondition('batch threshold: enough live samples to fill a batch', shards.size > 0 || candidates.length >= input.batchSize, () =>
          JSON.stringify({ candidates: candidates.length, batchSize: input.batchSize }),
        );
        // With no shard running there is nothing to wait for but the completed candidates.
        const everyShardEnded =
          shards.size === 0
            ? new Promise<undefined>(() => undefined)
            : Promise.allSettled([...shards.values()].map((shard) => shard.ended)).then(() => undefined);
        const result = await unlessShardFails(() =>
          Promise.race([batchWatcher.awaitBatch({ runId: spec.runId, iteration, candidates, batchSize: input.batchSize }), everyShardEnded]),
        );
        if (result !== undefined) {
          ready = selectBatch(ledger, result.sampleIds, input.batchSize);
        } else {
          await stopShards([...shards.values()]);
          const leftover = samplesByState(ledger).waiting;
          for (const placement of assignLeastLoaded(leftover, loadsByRank(ledger, allRanks))) launchShard(placement.rank, placement.sampleIds);
          await refill(allRanks, spec.maxConcurrentSamples);
        }
      }
      if (overlapped) {
        // Training needs the manifest only; marking every sample (store I/O per sample) runs
        // alongside the shrink and training, and is awaited before the iteration ends.
        const manifest = await orchestrator.writeBatchManifest({ runId: spec.runId, iteration, fromVersion, sampleIds: ready });
        ledger = sealBatch(ledger, ready);
        batch = { sampleIds: ready, totalTokens: manifest.totalTokens };
      } else {
        const sealedNow = await orchestrator.sealBatch({ runId: spec.runId, iteration, fromVersion, sampleIds: ready });
        ledger = sealBatch(ledger, ready);
        batch = { sampleIds: ready, totalTokens: sealedNow.totalTokens };
      }
    }
    batchSampleCount = batch.sampleIds.length;
    stats.batchSamples = batch.sampleIds.length;
    stats.batchTokens = batch.totalTokens;
    // Marks the batch's samples (idempotent: also completes the marking of an earlier attempt).
    const marking = overlapped ? orchestrator.sealBatch({ runId: spec.runId, iteration, fromVersion, sampleIds: batch.sampleIds }) : undefined;
    marking?.catch(() => undefined); // observed before the iteration ends

    // ---- 2. shrink: release the train group's ranks ----------------------------------------------
    if (release.length > 0) pool = beginOffload(layout, pool, release);
    await enterPhase('shrink');
    if (release.length > 0) {
      const releasedSet = new Set(release);
      const moved = await stopShards([...shards.values()].filter((shard) => releasedSet.has(shard.rank)));
      stats.migrated = moved.length;
      if (keep.length > 0) {
        for (const placement of assignLeastLoaded(moved, loadsByRank(ledger, keep))) launchShard(placement.rank, placement.sampleIds);
      }
      await releaseMemory(release, [...ALL_MEMORY_TAGS]);
      pool = completeOffload(layout, pool, release);
    }
    // New samples may start on the ranks that keep rolling out only within the staleness bound:
    // they can be trained by the next `asyncRatio` batches, and the samples still live already
    // fill those up to maxConcurrentSamples − batchSize. Admitting more would only make samples
    // go stale (with the default bound this admits nothing; a larger maxConcurrentSamples does).
    if (keep.length > 0 && spec.asyncRatio >= 1) await refill(keep, spec.maxConcurrentSamples - input.batchSize);

    // ---- 3. train ‖ long tail --------------------------------------------------------------------
    pool = beginTraining(layout, pool);
    await enterPhase('train');
    trainerOnloaded = true;
    await Promise.all(trainerNodes.map((node) => onTrainerNode(node, trainerActivities(node).trainerOnload({ runId: spec.runId, node }))));
    const leader = trainerNodes[0];
    const results = await unlessShardFails(() =>
      Promise.all(
        trainerNodes.map((node) =>
          onTrainerNode(node, trainerActivities(node).trainStep({ runId: spec.runId, node, iteration, fromVersion, leader: node === leader })),
        ),
      ),
    );
    const newVersion = fromVersion + 1;
    checkPostcondition('train step: every train node reached the next version', results.every((r) => r.newVersion === newVersion), () =>
      JSON.stringify(results),
    );
    committedVersion = newVersion;
    stats.toVersion = newVersion;
    if (trainerShared) {
      await Promise.all(trainerNodes.map((node) => onTrainerNode(node, trainerActivities(node).trainerOffload({ runId: spec.runId, node }))));
      trainerOnloaded = false;
    }
    pool = endTraining(layout, pool);

    // ---- 4. stop and checkpoint every shard ------------------------------------------------------
    await enterPhase('stop');
    await stopShards([...shards.values()]);

    // ---- 5. weight sync, then expand -------------------------------------------------------------
    await enterPhase('sync');
    if (release.length > 0) {
      pool = beginOnload(layout, pool, release);
      await resumeMemory(release, ['weights']);
    }
    await syncWeights(allRanks, newVersion);
    await enterPhase('expand');
    if (release.length > 0) {
      await resumeMemory(release, ['kv_cache']);
      pool = completeOnload(layout, pool, release);
    }
    if (marking !== undefined) await marking;
    checkPoolInvariants(layout, pool);
    checkLedgerInvariants(ledger);
  } catch (error) {
    const failedPhase = phase;
    await CancellationScope.nonCancellable(() => restoreServingPool(error));
    if (lostNow.size > 0) {
      // Not retried here: the run workflow records the lost ranks and starts the iteration again without them.
      const ranks = [...lostNow].sort((a, b) => a - b);
      throw ApplicationFailure.create({
        type: 'RanksLost',
        nonRetryable: true,
        message:
          `iteration ${iteration} attempt ${attempt}: ranks ${ranks.join(',')} lost in phase '${failedPhase}' ` +
          `(no worker took their activities for ${(lostNodeTimeoutMs ?? 0) / 1000} s); pool restored without them`,
        details: [{ ranks, trainerNode: trainerNodeLost ?? null }],
      });
    }
    throw ApplicationFailure.retryable(
      `iteration ${iteration} attempt ${attempt} failed in phase '${failedPhase}': ${describeError(error)}; pool restored to serving`,
      'IterationFailed',
    );
  }

  await enterPhase('done');
  stats.carriedOver = ledger.live.length;
  stats.endedAtMs = Date.now();
  return { version: stats.toVersion, ledger, stats };

  /**
   * Compensation: no shard running, trainer offloaded where it shares GPUs, every rank resident
   * again. Weights are left as they are: the retry re-syncs (idempotent per version).
   */
  async function restoreServingPool(cause: unknown): Promise<void> {
    const failedPhase = phase;
    await enterPhase('recovering').catch(() => undefined);
    const problems: string[] = [];
    try {
      // A shard that failed (the cause, another rank with the same broken engine, or a lost node)
      // has ended and its samples are settled: not a failure to restore the pool. Failing to settle is.
      await stopShards([...shards.values()], () => undefined);
    } catch (error) {
      problems.push(`stopping shards: ${describeError(error)}`);
    }
    if (trainerShared && trainerOnloaded && trainerNodeLost === undefined) {
      try {
        await Promise.all(trainerNodes.map((node) => onTrainerNode(node, trainerActivities(node).trainerOffload({ runId: spec.runId, node }))));
      } catch (error) {
        if (!isLostNode(error)) problems.push(`trainer offload: ${describeError(error)}`);
      }
    }
    // Lost ranks are out of the pool: nothing to reload there (a returned rank reloads when it rejoins).
    const notServing = layout.ranks
      .map((rank) => rank.id)
      .filter((rank) => pool.rankPhases[rank] !== 'serving' && pool.rankPhases[rank] !== 'lost' && !lostNow.has(rank));
    // A rank found lost while reloading joins the lost ones instead of failing the restore.
    const reloadGroups = nodeGroups(notServing);
    const reloads = await Promise.allSettled(reloadGroups.map((group) => resumeGroup(group, [...ALL_MEMORY_TAGS])));
    const reloadFailures = reloads.flatMap((result, i) =>
      result.status === 'rejected' && !isLostNode(result.reason) ? [`ranks ${JSON.stringify(reloadGroups[i])}: ${describeError(result.reason)}`] : [],
    );
    if (reloadFailures.length === 0) pool = initialPoolState(layout, [...new Set([...lostRanks, ...lostNow])].sort((a, b) => a - b));
    else problems.push(`reloading ranks: ${reloadFailures.join('; ')}`);
    if (problems.length > 0) {
      throw ApplicationFailure.nonRetryable(
        `iteration ${iteration} failed in phase '${failedPhase}' (${describeError(cause)}) and could not restore the pool: ${problems.join('; ')}` +
          (committedVersion === undefined ? '' : ` (weights v${committedVersion} were already trained)`),
        'PoolRestoreFailed',
      );
    }
  }
}
