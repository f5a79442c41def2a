/**
 * GPU-node activities: run on the worker that owns a node's GPUs, against its local engines.
 *
 * - runRolloutShard: the agent loop for a set of samples on one rank. Checkpoints every sample
 *   at each turn boundary; on cancellation aborts in-flight generation and checkpoints the
 *   partial turn (the prefix is kept and resumes wherever the sample goes next).
 * - runRolloutShards: a group of such shards on this node's ranks, each run as runRolloutShard
 *   runs one (one copy of the per-shard logic: runShard), under one heartbeat.
 * - memory / weight / trainer activities: thin, idempotent wrappers over the engines, with the
 *   engine's answers validated (they are input like any other).
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { setMaxListeners } from 'node:events';
import { existsSync } from 'node:fs';
import { z } from 'zod';
import {
  ALL_MEMORY_TAGS,
  type MemoryTag,
  engineStatusSchema,
  kvCapacityTokensSchema,
  trainerStatusSchema,
  trainStepResultSchema,
  turnResultSchema,
  type AgentEnvironment,
  type EpisodeHistory,
  type RolloutEngine,
  type Trainer,
  type Trajectory,
} from '../engines/types';
import { EngineProtocolError } from '../engines/http/errors';
import { EpisodeLostError } from '../engines/openenv/errors';
import { engineMayRecover } from '../engines/transient';
import { checkNoDuplicates, checkNonEmpty, checkPostcondition, checkSubset } from '../validation/patterns';
import type { GpuNodeActivities, RankWeightVersion } from '../contract/activities';
import { describeError } from '../contract/errors';
import type { RankMemoryInput, ShardGroupInput, ShardGroupResult, ShardInput, ShardResult, WeightSyncInput } from '../contract/types';
import { appendSpan, expandSpans, withinLagLimit, type VersionSpan } from '../gpu/staleness';
import { contextIds, contextTokens, keepNewest, SampleStateError, turnVersionSpans, type SampleRecord, type TrajectoryStore } from '../store';
import { failingFast } from './failFast';
import { withHeartbeat } from './heartbeat';
import { rolloutMetrics, type RolloutMetrics } from './rolloutMetrics';
import { createWeightBroadcastActivities } from './weightBroadcast';

export interface GpuNodeDeps {
  node: number;
  /** The run whose engines this worker holds (engine state is per run). */
  runId: string;
  /** This node's rollout engines by rank id. */
  engines: ReadonlyMap<number, RolloutEngine>;
  /** This node's part of the trainer, if the node hosts train GPUs. */
  trainer: Trainer | undefined;
  environment: AgentEnvironment;
  store(runId: string): TrajectoryStore;
  /** Where trained weights are exported and loaded from. */
  weightsPath(runId: string, version: number): string;
  weightsDir(runId: string): string;
  /** Real seconds per simulated second (1 for real engines): environment timeouts are simulated time. */
  timeScale: number;
  /** How often long activities heartbeat (progress + cancellation delivery). */
  heartbeatIntervalMs: number;
  /** Real engines: cap on new tokens per turn (an agent turn is short; the trajectory budget is not). */
  maxNewTokensPerTurn?: number;
  /**
   * Whether the train step's leader exports the new weights (disk sync). With broadcast sync the
   * weights go to the engines from the trainer's memory; the export runs only as the fallback.
   */
  exportOnTrainStep?: boolean;
  /** A group member's waits before it runs again after its engine failed (default: memberRetryDelays of 1 s). */
  memberRetryDelaysMs?: readonly number[];
  now(): number;
}

/** An activity addressed to a rank or node this worker does not own: routing is wrong, retry cannot help. */
function notOwned(what: string, node: number): ApplicationFailure {
  return ApplicationFailure.nonRetryable(`${what} is not served by gpu-node ${node}; check the layout the workers were started with`, 'WrongNode');
}

/**
 * An engine answered something a retry cannot fix (malformed, out of range, for another request):
 * non-retryable, with the engine, the call and the reason named.
 */
function engineProtocolError(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, 'EngineProtocolError');
}

/** Validates an engine's answer with its zod schema; a malformed answer is an EngineProtocolError. */
function engineAnswer<T>(schema: z.ZodType<T>, answer: unknown, what: string): T {
  const parsed = schema.safeParse(answer);
  if (!parsed.success) throw engineProtocolError(`${what} returned a malformed answer: ${z.prettifyError(parsed.error).replace(/\n/g, ' ')}`);
  return parsed.data;
}

/**
 * The trainer's view of a batch trained from `trainVersion`: each sample's whole token sequence with
 * the policy's tokens masked in, their behaviour logprobs and the version that generated each token
 * (the trainer's off-policy correction uses both). Tokens lagging `trainVersion` by more than
 * `maxTokenLag` stay as context but are masked out of the loss (docs/design.md §5.2 "Staleness").
 * Undefined when the samples carry no ids (simulated run); a batch that mixes both is a bug and throws.
 */
export function batchTrajectories(records: readonly SampleRecord[], trainVersion: number, maxTokenLag?: number): Trajectory[] | undefined {
  const withIds = records.filter((r) => r.promptIds !== undefined).length;
  if (withIds === 0) return undefined;
  if (withIds !== records.length) {
    throw ApplicationFailure.nonRetryable(`a batch mixes samples with and without token ids (${withIds} of ${records.length} have ids)`, 'EngineProtocolError');
  }
  return records.map((record) => {
    if (record.status !== 'completed' || record.reward === undefined) {
      throw ApplicationFailure.nonRetryable(`batch sample ${record.id} is ${record.status}, not completed with a reward`, 'StoreStateError');
    }
    const inputIds = [...(record.promptIds ?? [])];
    const lossMask: (0 | 1)[] = inputIds.map(() => 0);
    const logprobs: number[] = inputIds.map(() => 0);
    const versions: number[] = inputIds.map(() => record.startVersion);
    for (const t of record.turns) {
      if (t.outputIds === undefined || t.logprobs === undefined || t.observationIds === undefined) {
        throw ApplicationFailure.nonRetryable(`batch sample ${record.id} turn ${t.turn} lacks its ids or logprobs`, 'StoreStateError');
      }
      const tokenVersions = expandSpans(turnVersionSpans(t));
      if (tokenVersions.some((version) => version > trainVersion)) {
        throw ApplicationFailure.nonRetryable(`batch sample ${record.id} turn ${t.turn} has tokens of a version after v${trainVersion}, the version it is trained from`, 'StoreStateError');
      }
      inputIds.push(...t.outputIds, ...t.observationIds);
      lossMask.push(...tokenVersions.map((version) => (withinLagLimit(version, trainVersion, maxTokenLag) ? (1 as const) : (0 as const))), ...t.observationIds.map(() => 0 as const));
      logprobs.push(...t.logprobs, ...t.observationIds.map(() => 0));
      versions.push(...tokenVersions, ...t.observationIds.map(() => t.weightVersion));
    }
    return { sampleId: record.id, reward: record.reward, inputIds, lossMask, logprobs, versions };
  });
}

/** The KV capacity a rank's engine reports (null: none); a malformed answer fails non-retryably, naming the rank. */
export async function engineKvCapacity(engine: RolloutEngine, rank: number): Promise<number | null> {
  return engineAnswer(kvCapacityTokensSchema, await engine.kvCapacityTokens(), `rank ${rank} engine KV capacity`) ?? null;
}

/**
 * A KV capacity read that failed: a malformed answer is the engine's protocol error and fails the
 * shard (non-retryable, the rank named); any other failure (no answer, an HTTP error) leaves the
 * capacity unknown for this shard, said in the worker's log, and the next shard reads again. The
 * samples' work is not lost over a figure the admission only bounds itself with.
 */
export function kvCapacityReadFailed(rank: number, error: unknown, warn: (message: string) => void): undefined {
  if (error instanceof ApplicationFailure && error.nonRetryable) throw error;
  if (error instanceof EngineProtocolError) throw engineProtocolError(`rank ${rank} engine KV capacity: ${error.message}`);
  warn(`rank ${rank}: could not read the engine's KV capacity, unknown for this shard: ${describeError(error)}`);
  return undefined;
}

/**
 * Whether the activity's cancellation is one its workflow requested: not a timeout, a closed
 * workflow or the worker's shutdown, after which Temporal may run the activity again.
 */
function cancelledByWorkflow(reason: unknown): boolean {
  return reason instanceof CancelledFailure && reason.message === 'CANCELLED';
}

/**
 * Outcomes of ended shards a gpu-node worker keeps for the direct stops that come after: those of
 * running groups' ended members and of cancelled shards (a stop comes soon after, or never).
 */
const ENDED_OUTCOMES_KEPT = 1024;

/** A shard's sample counts, as its heartbeat reports them. */
type ShardProgress = { completed: number; dropped: number; running: number };

/** How one shard runs: alone (runRolloutShard) or as a member of a group (runRolloutShards). */
interface ShardRun {
  /** Stops the shard as a direct stop does: its group stops it when a sibling fails. */
  stop: AbortController;
  /** Runs the sample loop under a heartbeat: the shard's own, or none where its group heartbeats for every member. */
  heartbeat(progress: () => ShardProgress, loop: () => Promise<void>): Promise<void>;
  /**
   * A group member: its outcome is kept whenever it ends cleanly, since the group's result comes
   * only once its last member ends. A lone shard's outcome is kept only when its workflow cancelled it.
   */
  member: boolean;
  /** Keeps an ended shard's outcome for the stops that name it after. */
  keep(outcome: ShardResult): void;
}

/** One run of a shard's samples (runSamplesOnce): a group member whose engine failed runs again. */
interface ShardPass {
  /** The store owner of this run's claims and writes. */
  owner: string;
  /** A run again: the failed run's owner, the only one it may take samples from. */
  from?: string;
  /** Its samples' failures, in the order they came. */
  failures: unknown[];
  /** The shard's end from outside: its cancellation, a direct stop, a failed sibling. */
  stopped: AbortSignal;
  /** Aborted by a sample's failure: the run's other samples stop and checkpoint. */
  samplesStop: AbortController;
  outcome: ShardResult;
  progress(): ShardProgress;
  /** Reads the engine's served version once the shard is stopped (a restart during it). */
  readEngineAtEnd(): Promise<number | undefined>;
}

/** How many times a group member whose engine failed runs again inside its group. */
export const MEMBER_RETRIES = 8;

/**
 * A group member's waits before it runs again after its engine failed (engineMayRecover): those
 * of the run's activity retry policy (the initial interval, doubling, at most 30 s, as the
 * workflow's retry of the whole group would wait), MEMBER_RETRIES of them: from 1 s, about two
 * minutes in all, in which a restarting engine is back. Past the last, its failure fails the
 * group, and Temporal's retry of the group takes over.
 */
export function memberRetryDelays(initialIntervalMs: number): number[] {
  return Array.from({ length: MEMBER_RETRIES }, (_, retry) => Math.min(initialIntervalMs * 2 ** retry, 30_000));
}

/** Waits `ms`, or less if `signal` aborts first (resolves either way). */
function waitUnless(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    if (signal.aborted) done();
  });
}

/** A group member's failure: the first fails the group; the others are logged with their shard. */
interface MemberFailure {
  shardId: string;
  error: unknown;
}

/**
 * Whether a shard that ended cleanly keeps its outcome for the stops that name it after: a group
 * member does; a cancelled shard only when its workflow cancelled it (Temporal runs it no more).
 */
function keepsOutcome(member: boolean, cancellation: AbortSignal): boolean {
  return cancellation.aborted ? cancelledByWorkflow(cancellation.reason) : member;
}

/** A group's heartbeat: its members' sample counts summed (a member still claiming counts all its samples running). */
function groupProgress(shards: readonly ShardInput[], progressOf: ReadonlyMap<string, () => ShardProgress>): ShardProgress & { shards: number } {
  const total = { shards: shards.length, completed: 0, dropped: 0, running: 0 };
  for (const shard of shards) {
    const member = progressOf.get(shard.shardId)?.() ?? { completed: 0, dropped: 0, running: shard.sampleIds.length };
    total.completed += member.completed;
    total.dropped += member.dropped;
    total.running += member.running;
  }
  return total;
}

/**
 * Claims the shard's samples that are still running (with `from`: only from that owner). A
 * retried shard finds some already settled; one may settle between reading and claiming (the
 * earlier attempt finishing it as it is fenced out, found by the soak): read again and claim what
 * is still live.
 */
async function claimLive(store: TrajectoryStore, ids: number[], owner: string, from?: string): Promise<void> {
  for (let tries = 1; ; tries++) {
    const live = (await store.readSamples(ids)).filter((record) => record.status === 'running').map((record) => record.id);
    if (live.length === 0) return;
    try {
      await store.claim(live, owner, from === undefined ? {} : { from });
      return;
    } catch (error) {
      if (!(error instanceof SampleStateError) || tries >= 3) throw error;
    }
  }
}

/**
 * Waits for every rank's call of a per-node activity before failing with the first error: a
 * retry must not find sibling engines still busy with the failed attempt's calls. (A collective's
 * calls fail at the first error instead: weightBroadcast.ts, onEveryRankOfCollective.)
 */
export async function everyRank(calls: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(calls);
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** What a stateful environment needs to re-create a lost episode: the recorded prompt and observations. */
function episodeHistory(record: SampleRecord): EpisodeHistory | undefined {
  if (record.promptIds === undefined) return undefined;
  return { promptIds: record.promptIds, observationIds: record.turns.map((t) => t.observationIds ?? []) };
}

type SampleEnd = { kind: 'completed' } | { kind: 'dropped'; reason: string } | { kind: 'unfinished' };

export function createGpuNodeActivities(deps: GpuNodeDeps): GpuNodeActivities {
  const memberRetryDelaysMs = deps.memberRetryDelaysMs ?? memberRetryDelays(1_000);
  /**
   * Shards running in this process, by id: stopShards aborts them directly and waits until
   * `checkpointed` (every sample checkpointed, the shard touches the store no more: its outcome;
   * undefined if the shard failed instead).
   */
  const runningShards = new Map<string, { stop: AbortController; checkpointed: Promise<ShardResult | undefined> }>();
  /**
   * Outcomes of shards that ended before a stop naming them came, latest last. A shard its
   * workflow cancelled: the workflow requests the cancellation together with the direct stop, and
   * when the cancellation reaches this worker first the shard has ended by the time the stop
   * comes (the cancelled activity carries no outcome). A group's member that ended while its
   * siblings run: the group's result comes only once its last member ends. The stop answers with
   * the outcome, so the workflow need not read it back from the store.
   */
  const endedOutcomes = new Map<string, ShardResult>();
  const rememberEnded = (outcome: ShardResult): void => keepNewest(endedOutcomes, outcome.shardId, outcome, ENDED_OUTCOMES_KEPT);
  /** A shard Temporal may run again is not answered for: a stop leaves it to the cancellation request. */
  const forgetEnded = (outcome: ShardResult): void => {
    if (endedOutcomes.get(outcome.shardId) === outcome) endedOutcomes.delete(outcome.shardId);
  };

  /** Engines hold one run's weights and memory: serving another run's activity would corrupt both. */
  const requireRun = (runId: string): void => {
    if (runId !== deps.runId) {
      throw ApplicationFailure.nonRetryable(
        `gpu-node ${deps.node} serves run '${deps.runId}', got an activity of run '${runId}': start this node's worker with that run's config (two runs on one pool must use different temporal.taskQueuePrefix)`,
        'WrongRun',
      );
    }
  };
  const engineFor = (rank: number): RolloutEngine => {
    const engine = deps.engines.get(rank);
    if (engine === undefined) throw notOwned(`rank ${rank}`, deps.node);
    return engine;
  };
  // One read per rank until its KV cache is re-allocated (a reload), not one per shard: a vLLM
  // /metrics page is large and shards start at every admission step. A failed read is not kept.
  const kvCapacityReads = new Map<number, Promise<number | null>>();
  const kvCapacityOf = (rank: number, engine: RolloutEngine): Promise<number | null | undefined> => {
    let read = kvCapacityReads.get(rank);
    if (read === undefined) {
      read = engineKvCapacity(engine, rank);
      kvCapacityReads.set(rank, read);
      read.catch(() => kvCapacityReads.get(rank) === read && kvCapacityReads.delete(rank));
    }
    return read.catch((error: unknown) => kvCapacityReadFailed(rank, error, (message) => Context.current().log.warn(message)));
  };
  const trainer = (): Trainer => {
    if (deps.trainer === undefined) throw notOwned('the trainer', deps.node);
    return deps.trainer;
  };

  type Generation = { generated?: number; outputIds?: readonly number[]; logprobs?: readonly number[]; weightVersion: number; tokenVersions: VersionSpan[] };

  /**
   * One engine call for (the rest of) a turn. Checkpoints and returns 'aborted' when the call was
   * cut short, so the prefix (with its ids and logprobs for real engines) resumes on any rank.
   */
  async function generateTurn(
    input: ShardInput,
    owner: string,
    engine: RolloutEngine,
    current: SampleRecord,
    turn: number,
    context: number,
    prefixTokens: number,
    inputIds: number[] | undefined,
    partial: SampleRecord['partial'],
    attempt: number,
    signal: AbortSignal,
    metrics: RolloutMetrics,
  ): Promise<Generation | 'aborted'> {
    const budget = Math.max(1, input.maxTokens - context);
    const perTurn = deps.maxNewTokensPerTurn === undefined ? budget : Math.max(1, Math.min(budget, deps.maxNewTokensPerTurn - prefixTokens));
    const request = {
      requestId: `${input.shardId}:${current.id}:${turn}:${attempt}`,
      sampleId: current.id,
      turn,
      contextTokens: context,
      prefixTokens,
      maxNewTokens: perTurn,
      ...(inputIds === undefined ? {} : { inputIds, prefixIds: partial?.ids ?? [] }),
    };
    if (inputIds !== undefined && prefixTokens > 0 && partial?.ids === undefined) {
      throw engineProtocolError(`sample ${current.id} has a partial turn without ids; a real engine cannot resume it`);
    }
    const result = engineAnswer(turnResultSchema, await engine.generate(request, signal), `rank ${input.rank} engine, turn ${turn} of sample ${current.id}`);
    if (result.requestId !== request.requestId) {
      throw engineProtocolError(`rank ${input.rank} engine answered request ${result.requestId} to request ${request.requestId} (sample ${current.id})`);
    }
    if (result.outputTokens > request.maxNewTokens) {
      throw engineProtocolError(
        `rank ${input.rank} engine generated ${result.outputTokens} tokens for request ${request.requestId}, more than maxNewTokens ${request.maxNewTokens} (sample ${current.id})`,
      );
    }
    let outputIds: number[] | undefined;
    let logprobs: number[] | undefined;
    if (inputIds !== undefined) {
      if (result.outputIds?.length !== result.outputTokens || result.logprobs?.length !== result.outputTokens) {
        throw engineProtocolError(`rank ${input.rank} engine returned ${result.outputTokens} tokens for sample ${current.id} without as many output ids and logprobs`);
      }
      outputIds = [...(partial?.ids ?? []), ...result.outputIds];
      logprobs = [...(partial?.logprobs ?? []), ...result.logprobs];
    }
    // Counted once the answer is whole: a refused one decoded nothing the run keeps.
    metrics.decoded(result.outputTokens);
    const generated = prefixTokens + result.outputTokens;
    // The prefix keeps the versions that generated it; this call's tokens are the engine's current version.
    const tokenVersions = appendSpan(partial === undefined ? [] : turnVersionSpans(partial), result.weightVersion, result.outputTokens);
    if (result.finishReason === 'abort') {
      // Aborted before its first token (queued in the engine, most often): the record already
      // holds all the turn has, so a stop writes nothing for this sample.
      if (result.outputTokens === 0) return 'aborted';
      const store = deps.store(input.runId);
      const next: SampleRecord = {
        ...current,
        partial: {
          turn,
          tokens: generated,
          weightVersion: result.weightVersion,
          tokenVersions,
          rank: input.rank,
          ...(outputIds === undefined ? {} : { ids: outputIds, logprobs }),
        },
      };
      await store.checkpoint(next, owner);
      return 'aborted';
    }
    return { generated, outputIds, logprobs, weightVersion: result.weightVersion, tokenVersions };
  }

  async function runSample(input: ShardInput, owner: string, engine: RolloutEngine, record: SampleRecord, signal: AbortSignal, metrics: RolloutMetrics): Promise<SampleEnd> {
    const store = deps.store(input.runId);
    const attempt = Context.current().info.attempt;
    let current = record;
    for (;;) {
      if (signal.aborted) return { kind: 'unfinished' };
      const lastTurn = current.turns.at(-1);
      if (lastTurn?.final !== undefined) {
        // The environment ended it, but the attempt that ran that turn died before marking it
        // (workers of an earlier build checkpointed the last turn before completing).
        await store.markCompleted(current.id, owner, lastTurn.final.reward, deps.now());
        return { kind: 'completed' };
      }
      const simulatedAgeMs = (deps.now() - current.startedAtMs) / deps.timeScale;
      if (simulatedAgeMs > input.environmentTimeoutMs) {
        await store.dropSamples([current.id], 'environment-timeout');
        return { kind: 'dropped', reason: 'environment-timeout' };
      }
      const turn = current.turns.length;
      const context = contextTokens(current);
      if (turn >= input.maxTurns || context >= input.maxTokens) {
        // Truncated trajectories still end in a batch, with the reward the environment gave so far (0).
        await store.markCompleted(current.id, owner, 0, deps.now());
        return { kind: 'completed' };
      }
      const partial = current.partial?.turn === turn ? current.partial : undefined;
      const prefixTokens = partial?.tokens ?? 0;
      const inputIds = contextIds(current);
      const generation =
        partial?.finished === true && partial.ids !== undefined
          ? // Real engines: the turn had finished before a stop during its tool call; do not extend it.
            { outputIds: partial.ids, logprobs: partial.logprobs, weightVersion: partial.weightVersion, tokenVersions: turnVersionSpans(partial) }
          : await generateTurn(input, owner, engine, current, turn, context, prefixTokens, inputIds, partial, attempt, signal, metrics);
      if (generation === 'aborted') return { kind: 'unfinished' };
      const generated = generation.generated ?? prefixTokens;
      const outputIds = generation.outputIds;
      const logprobs = generation.logprobs;
      const weightVersion = generation.weightVersion;
      const tokenVersions = generation.tokenVersions;
      const keepWholeTurn = (): SampleRecord => ({
        ...current,
        partial: {
          turn,
          tokens: generated,
          weightVersion,
          tokenVersions,
          rank: input.rank,
          ...(outputIds === undefined ? {} : { ids: [...outputIds], logprobs: [...(logprobs ?? [])], finished: true }),
        },
      });
      let step;
      try {
        const history = outputIds === undefined ? undefined : [...current.turns.map((t) => t.outputIds ?? []), outputIds];
        step = await deps.environment.step(current.id, turn, generated, signal, history, episodeHistory(current));
      } catch (error) {
        if (error instanceof EpisodeLostError && !signal.aborted) {
          // The crash rule (docs/engine-protocol.md): the episode cannot go on; the sample ends, counted by reason.
          await store.dropSamples([current.id], error.reason);
          return { kind: 'dropped', reason: error.reason };
        }
        if (!signal.aborted) throw error;
        // Stopped during the tool call: keep the whole generated turn; it resumes with 0 new tokens.
        current = keepWholeTurn();
        await store.checkpoint(current, owner);
        return { kind: 'unfinished' };
      }
      if (outputIds !== undefined && step.observationIds === undefined) {
        throw ApplicationFailure.nonRetryable(
          `the environment returned no observation ids for sample ${current.id} turn ${turn}, but the engine works on token ids`,
          'EnvironmentProtocolError',
        );
      }
      metrics.turnEnded();
      const { partial: _finishedPartial, ...rest } = current;
      current = {
        ...rest,
        turns: [
          ...current.turns,
          {
            turn,
            generatedTokens: generated,
            observationTokens: step.observationTokens,
            weightVersion,
            tokenVersions,
            rank: input.rank,
            ...(outputIds === undefined ? {} : { outputIds: [...outputIds], logprobs: [...(logprobs ?? [])], observationIds: step.observationIds }),
            ...(partial === undefined || partial.tokens === 0 ? {} : { resumedFrom: { rank: partial.rank, tokens: partial.tokens } }),
            ...(step.done ? { final: { reward: step.reward ?? 0 } } : {}),
          },
        ],
      };
      if (step.done) {
        // The last turn and the completion in one write: one fsync'd record fewer per sample.
        await store.completeSample(current, owner, step.reward ?? 0, deps.now());
        return { kind: 'completed' };
      }
      await store.checkpoint(current, owner);
    }
  }

  async function releaseRankMemory({ runId, rank, tags }: RankMemoryInput & { tags: MemoryTag[] }): Promise<void> {
    requireRun(runId);
    const engine = engineFor(rank);
    await withHeartbeat(deps.heartbeatIntervalMs, () => ({ rank, releasing: tags }), () => engine.releaseMemory(tags));
    const status = engineAnswer(engineStatusSchema, await engine.status(), `rank ${rank} engine status`);
    checkPostcondition(`rank ${rank} released ${tags.join('+')}`, tags.every((tag) => !status.resident.includes(tag)), () => JSON.stringify(status));
  }

  /** Returns the weight version the engine serves once resumed (behind the run's: it restarted). */
  async function resumeRank({ runId, rank, tags }: RankMemoryInput & { tags: MemoryTag[] }): Promise<RankWeightVersion> {
    requireRun(runId);
    const engine = engineFor(rank);
    await withHeartbeat(deps.heartbeatIntervalMs, () => ({ rank, resuming: tags }), () => engine.resumeMemory(tags));
    if (tags.includes('kv_cache')) kvCapacityReads.delete(rank);
    const status = engineAnswer(engineStatusSchema, await engine.status(), `rank ${rank} engine status`);
    checkPostcondition(`rank ${rank} resumed ${tags.join('+')}`, tags.every((tag) => status.resident.includes(tag)), () => JSON.stringify(status));
    return { rank, weightVersion: status.weightVersion };
  }

  async function resumeRankMemory(input: RankMemoryInput & { tags: MemoryTag[] }): Promise<void> {
    await resumeRank(input);
  }

  async function syncRankWeights({ runId, rank, version }: WeightSyncInput): Promise<void> {
    requireRun(runId);
    const engine = engineFor(rank);
    const path = deps.weightsPath(runId, version);
    await withHeartbeat(deps.heartbeatIntervalMs, () => ({ rank, version }), () => engine.updateWeights(version, path));
    const status = engineAnswer(engineStatusSchema, await engine.status(), `rank ${rank} engine status`);
    checkPostcondition(`rank ${rank} serves weights v${version}`, status.weightVersion === version, () => JSON.stringify(status));
  }

  /**
   * An engine restarted since its rank's last sync (a crash, a supervisor's restart) serves older
   * weights than its shard's version. It loads the run's weights of that version before the
   * shard's turns where they were exported (disk sync); without a file (broadcast sync) its turns
   * record the version it serves until the next sync. Returns the version it served when behind,
   * which the shard reports: a restarted engine is in no weight group the run kept.
   */
  async function catchUpWeights(input: ShardInput, engine: RolloutEngine): Promise<number | undefined> {
    const served = engineAnswer(engineStatusSchema, await engine.status(), `rank ${input.rank} engine status`).weightVersion;
    if (served >= input.version) return undefined;
    const log = Context.current().log;
    if (!existsSync(deps.weightsPath(input.runId, input.version))) {
      log.warn(`rank ${input.rank} serves weights v${served}, its shard ${input.shardId} v${input.version}, and no weights of v${input.version} were exported to load: its turns record v${served} until the next sync`);
      return served;
    }
    log.warn(`rank ${input.rank} serves weights v${served}, its shard ${input.shardId} v${input.version} (the engine restarted since its last sync?): loading v${input.version} first`);
    await syncRankWeights({ runId: input.runId, rank: input.rank, version: input.version });
    return served;
  }

  /**
   * The version its engine serves at the shard's end, where that is below the shard's: the engine
   * restarted while the shard ran (between two turns; one cut off mid-turn fails the shard). Read
   * once the shard is stopped, beside its samples' checkpoints, or once they have ended. A read
   * that fails reports nothing, with a warning: every sample is accounted for either way, and a
   * restarted engine missed here is found by the sync's collective (which then forms a new group).
   * Takes the activity's logger: a stop's abort runs it outside the activity's context.
   */
  async function engineRestartedDuring(input: ShardInput, engine: RolloutEngine, log: Context['log']): Promise<number | undefined> {
    try {
      const served = engineAnswer(engineStatusSchema, await engine.status(), `rank ${input.rank} engine status`).weightVersion;
      if (served >= input.version) return undefined;
      log.warn(`rank ${input.rank} serves weights v${served} at the end of its shard ${input.shardId} of v${input.version}: the engine restarted while the shard ran; the next sync forms a new weight group`);
      return served;
    } catch (error) {
      log.warn(`rank ${input.rank}: could not read the engine's status at the end of shard ${input.shardId}, so a restart during it is not reported: ${describeError(error)}`);
      return undefined;
    }
  }

  async function exportWeights(runId: string, version: number): Promise<void> {
    if (existsSync(deps.weightsPath(runId, version))) return;
    const exported = await trainer().exportWeights(version, deps.weightsDir(runId));
    checkPostcondition(`weights v${version} exported where engines load them`, exported.path === deps.weightsPath(runId, version), () => exported.path);
  }

  /**
   * Registers a shard as running from its start, so a direct stop that comes while it claims its
   * samples answers with its outcome (every sample unfinished, as claimed) instead of missing it.
   * A retry of the same shard supersedes an attempt still running here (the store fences it).
   * Returns what unregisters it and answers the stops waiting on it (undefined: it failed), and
   * whether a later attempt of the shard has registered since (superseded).
   */
  function registerRunning(shardId: string, stop: AbortController): { ended(ended: ShardResult | undefined): void; superseded(): boolean } {
    let samplesEnded: (ended: ShardResult | undefined) => void = () => undefined;
    const running = { stop, checkpointed: new Promise<ShardResult | undefined>((resolve) => (samplesEnded = resolve)) };
    runningShards.set(shardId, running);
    return {
      ended: (ended) => {
        if (runningShards.get(shardId) === running) runningShards.delete(shardId);
        samplesEnded(ended);
      },
      superseded: () => runningShards.get(shardId) !== running,
    };
  }

  /**
   * Runs each of the shard's records to its end, or to its checkpoint when stopped, counting it in
   * `outcome`. A sample's failure stops the shard's other samples (`samplesStop`: each
   * checkpoints); once they have all ended the first failure is raised, every failure being in
   * `failures` in the order they came, so none goes on generating after the shard failed.
   */
  async function runRecords(
    input: ShardInput,
    owner: string,
    engine: RolloutEngine,
    records: SampleRecord[],
    signal: AbortSignal,
    samplesStop: AbortController,
    outcome: ShardResult,
    failures: unknown[],
  ): Promise<void> {
    const metrics = rolloutMetrics(Context.current().metricMeter, input.runId, input.rank);
    await Promise.allSettled(
      records.map(async (record) => {
        if (record.status === 'completed') return void outcome.completed.push(record.id);
        if (record.status === 'dropped') return void outcome.dropped.push({ id: record.id, reason: record.dropReason ?? 'unknown' });
        const end = await runSample(input, owner, engine, record, signal, metrics);
        metrics.sampleEnded(end.kind);
        // A stateful environment frees the episode of a sample that ended (not of one that moves on).
        if (end.kind !== 'unfinished') deps.environment.end?.(record.id);
        if (end.kind === 'completed') outcome.completed.push(record.id);
        else if (end.kind === 'dropped') outcome.dropped.push({ id: record.id, reason: end.reason });
        else outcome.unfinished.push(record.id);
      }).map((sample) =>
        sample.catch((error: unknown) => {
          if (failures.length === 0) samplesStop.abort(new Error(`shard ${input.shardId} stopped: one of its samples failed`));
          // In the order they failed: the first is the cause, later ones may follow from the stop.
          failures.push(error);
          throw error;
        }),
      ),
    );
    if (failures.length > 0) throw failures[0];
  }

  /** The failure a shard ends with (the first); the others its samples met after it are logged. */
  function logOtherFailures(input: ShardInput, causes: readonly unknown[], first: unknown): unknown {
    const others = causes.filter((cause) => cause !== first);
    if (others.length > 0) {
      Context.current().log.warn(`shard ${input.shardId} on rank ${input.rank}: ${others.length} more of its samples failed after the first: ${others.map(describeError).join('; ')}`);
    }
    return first;
  }

  /** A shard's outcome as its samples stand in the store (a member stopped while it waited to run again). */
  async function settledAsStored(input: ShardInput, engineBehind: number | undefined): Promise<ShardResult> {
    const outcome: ShardResult = { shardId: input.shardId, completed: [], unfinished: [], dropped: [], ...(engineBehind === undefined ? {} : { engineBehind }) };
    for (const record of await deps.store(input.runId).readSamples(input.sampleIds)) {
      if (record.status === 'completed') outcome.completed.push(record.id);
      else if (record.status === 'dropped') outcome.dropped.push({ id: record.id, reason: record.dropReason ?? 'unknown' });
      else outcome.unfinished.push(record.id);
    }
    return outcome;
  }

  /**
   * One run of a shard's samples: claims the live ones under `owner`, brings its engine up to the
   * shard's version, then runs them (runRecords) under the shard's heartbeat.
   */
  async function runSamplesOnce(input: ShardInput, run: ShardRun, pass: ShardPass): Promise<void> {
    const engine = engineFor(input.rank);
    const store = deps.store(input.runId);
    // Both to their end before either failure is raised: a failed catch-up must not leave the claim
    // still writing once the shard has answered for its samples.
    const [claimed, caughtUp] = await Promise.allSettled([claimLive(store, input.sampleIds, pass.owner, pass.from), catchUpWeights(input, engine)]);
    if (claimed.status === 'rejected') throw claimed.reason;
    if (caughtUp.status === 'rejected') throw caughtUp.reason;
    const engineBehind = caughtUp.value;
    if (engineBehind !== undefined) pass.outcome.engineBehind = engineBehind;
    else pass.stopped.addEventListener('abort', pass.readEngineAtEnd, { once: true });
    const records = await store.readSamples(input.sampleIds);
    // Real adapters listen on the signal once per in-flight generation: one per sample. Each
    // member of a group has a signal of its own, so its own samples count (and this shard's end read).
    const signal = AbortSignal.any([pass.stopped, pass.samplesStop.signal]);
    setMaxListeners(Math.max(10, records.length + 11), signal);
    await run.heartbeat(pass.progress, () => runRecords(input, pass.owner, engine, records, signal, pass.samplesStop, pass.outcome, pass.failures));
  }

  /**
   * One shard, alone (runRolloutShard) or in a group (runRolloutShards): claims its live samples,
   * runs each to its end and checkpoints what a stop or cancellation cut short. Its input's run is
   * checked by the caller. A group member whose engine fails with an error it may recover from
   * runs again alone after a wait (memberRetryDelaysMs), while its siblings go on; alone, a shard
   * is retried by Temporal (nothing to isolate it from).
   */
  async function runShard(input: ShardInput, run: ShardRun): Promise<ShardResult> {
    const engine = engineFor(input.rank);
    const context = Context.current();
    // A retried shard finds some of its samples already settled: claim only the live ones.
    // The store owner is the shard attempt: an earlier attempt of this shard that is still
    // running (its worker froze past the heartbeat timeout, then woke up) is fenced out.
    const attemptOwner = `${input.shardId}@${context.info.attempt}`;
    // Its outcome, and whether it found its engine behind: what the result and a direct stop's answer say.
    let outcome: ShardResult = { shardId: input.shardId, completed: [], unfinished: [], dropped: [] };
    const registered = registerRunning(input.shardId, run.stop);
    // What ends the shard from outside: its cancellation, a direct stop, a failed sibling.
    const stopped = AbortSignal.any([context.cancellationSignal, run.stop.signal]);
    // Each run of its samples listens on it (its own signal, the end read): room for every retry.
    setMaxListeners(memberRetryDelaysMs.length + 10, stopped);
    const progress = (): ShardProgress => ({
      completed: outcome.completed.length,
      dropped: outcome.dropped.length,
      running: input.sampleIds.length - outcome.completed.length - outcome.dropped.length - outcome.unfinished.length,
    });
    let clean = false;
    // Read beside the agent loop, so it adds no latency; awaited before the result.
    const kvCapacity = kvCapacityOf(input.rank, engine);
    kvCapacity.catch(() => undefined);
    // Started by a stop, so that it runs beside the checkpoints rather than after them.
    let endRead: Promise<number | undefined> | undefined;
    const readEngineAtEnd = (): Promise<number | undefined> => (endRead ??= engineRestartedDuring(input, engine, context.log));
    // Settled from the store (stopped while its engine had failed): the engine is not asked again.
    let engineLeftAlone = false;
    try {
      for (let retry = 0; ; retry += 1) {
        // A run again claims under an owner of its own, and only from the failed run: nothing of the
        // failed run writes after it, and samples a newer attempt of the shard took stay with it.
        const owner = retry === 0 ? attemptOwner : `${attemptOwner}.${retry}`;
        const from = retry === 0 ? undefined : retry === 1 ? attemptOwner : `${attemptOwner}.${retry - 1}`;
        // It keeps what an earlier run learnt of its engine (behind its version: restarted).
        outcome = { shardId: input.shardId, completed: [], unfinished: [], dropped: [], ...(outcome.engineBehind === undefined ? {} : { engineBehind: outcome.engineBehind }) };
        const failures: unknown[] = [];
        try {
          await runSamplesOnce(input, run, { owner, ...(from === undefined ? {} : { from }), failures, stopped, samplesStop: new AbortController(), outcome, progress, readEngineAtEnd });
          break;
        } catch (error) {
          const causes = failures.length > 0 ? failures : [error];
          if (!run.member || !causes.every(engineMayRecover)) throw logOtherFailures(input, causes, error);
          if (stopped.aborted) {
            // Stopped as its engine failed: every sample has ended, each where the failure left it.
            context.log.warn(`shard ${input.shardId} on rank ${input.rank}: its engine failed as it was stopped (${describeError(error)}); its samples stand as checkpointed`);
            engineLeftAlone = true;
            outcome = await settledAsStored(input, outcome.engineBehind);
            break;
          }
          const delayMs = memberRetryDelaysMs[retry];
          // Past its last wait, or a later attempt of the shard runs here now: fail as any failure.
          if (delayMs === undefined || registered.superseded()) throw logOtherFailures(input, causes, error);
          context.log.warn(
            `shard ${input.shardId} on rank ${input.rank}: its engine failed (${describeError(error)}); its samples are checkpointed and it runs again alone in ${delayMs} ms ` +
              `(retry ${retry + 1} of ${memberRetryDelaysMs.length}), while the other shards of its group go on`,
          );
          await waitUnless(delayMs, stopped);
          if (stopped.aborted) {
            // Stopped while it waited: its samples stand as the failed run left them (checkpointed), engine untouched.
            engineLeftAlone = true;
            outcome = await settledAsStored(input, outcome.engineBehind);
            break;
          }
        }
      }
      if (outcome.engineBehind === undefined && !engineLeftAlone) {
        const restartedFrom = await readEngineAtEnd();
        if (restartedFrom !== undefined) outcome.engineBehind = restartedFrom;
      }
      clean = true;
    } finally {
      stopped.removeEventListener('abort', readEngineAtEnd);
      // A direct stop answers with this (the workflow may not wait for the shard's own result).
      registered.ended(clean ? outcome : undefined);
    }
    // Kept at once (a stop may come now), its KV report added once read (one read per rank, mostly done).
    const kept: ShardResult | undefined = keepsOutcome(run.member, context.cancellationSignal) ? { ...outcome } : undefined;
    if (kept !== undefined) run.keep(kept);
    if (context.cancellationSignal.aborted) {
      // Every sample is checkpointed: report the cancellation so the workflow moves them on. A KV
      // read that failed is not this cancelled shard's to report: the rank's next shard reads
      // again (failed reads are not kept) and fails on it.
      if (kept !== undefined) {
        const kvCapacityTokens = await kvCapacity.catch(() => undefined);
        if (kvCapacityTokens !== undefined) kept.kvCapacityTokens = kvCapacityTokens;
      }
      await context.cancelled;
    }
    // Stopped directly (stopShards): every sample is checkpointed; the outcome says which are unfinished.
    checkPostcondition(
      `shard ${input.shardId}: every sample accounted for`,
      outcome.completed.length + outcome.dropped.length + outcome.unfinished.length === input.sampleIds.length,
      () => JSON.stringify(progress()),
    );
    const kvCapacityTokens = await kvCapacity;
    if (kvCapacityTokens === undefined) return outcome;
    if (kept !== undefined) kept.kvCapacityTokens = kvCapacityTokens;
    return { ...outcome, kvCapacityTokens };
  }

  /** A group's input, checked at the boundary: this worker's run, at least one shard, none twice, each of the run and on a rank of this node. */
  function checkShardGroup({ runId, shards }: ShardGroupInput): void {
    requireRun(runId);
    checkNonEmpty('shards of the group', shards);
    checkNoDuplicates('shard ids of the group', shards, (shard) => shard.shardId);
    checkSubset(
      "runs of the group's shards",
      shards.map((shard) => shard.runId),
      [runId],
      { universeName: `the group's run '${runId}'` },
    );
    for (const shard of shards) engineFor(shard.rank);
  }

  /**
   * The members of a group side by side under one heartbeat. The first member to fail stops its
   * siblings (each checkpoints) and, once every member has settled, fails the group with its
   * error. Members' outcomes kept for later stops are forgotten when Temporal may run the group
   * again (it failed, or was cancelled otherwise than by its workflow).
   */
  async function runShardGroup(input: ShardGroupInput): Promise<ShardGroupResult> {
    checkShardGroup(input);
    const progressOf = new Map<string, () => ShardProgress>();
    const kept: ShardResult[] = [];
    const failures: MemberFailure[] = [];
    const members = input.shards.map((shard) => ({ shard, stop: new AbortController() }));
    const stopSiblings = (failed: string): void => {
      for (const { shard, stop } of members) if (shard.shardId !== failed) stop.abort(new Error(`shard ${shard.shardId} stopped: shard ${failed} of its group failed`));
    };
    const runMember = ({ shard, stop }: (typeof members)[number]): Promise<ShardResult> =>
      runShard(shard, {
        stop,
        heartbeat: (progress, loop) => {
          progressOf.set(shard.shardId, progress);
          return loop();
        },
        member: true,
        keep: (outcome) => {
          rememberEnded(outcome);
          kept.push(outcome);
        },
      }).catch((error: unknown) => {
        if (!(error instanceof CancelledFailure)) {
          failures.push({ shardId: shard.shardId, error });
          if (failures.length === 1) stopSiblings(shard.shardId);
        }
        throw error;
      });
    const settled = await withHeartbeat(deps.heartbeatIntervalMs, () => groupProgress(input.shards, progressOf), () => Promise.allSettled(members.map(runMember)));
    return groupEnd(settled, failures, kept);
  }

  /** A group's end once every member has settled: its first failure, its cancellation, or every member's result in the input's order. */
  async function groupEnd(settled: PromiseSettledResult<ShardResult>[], failures: readonly MemberFailure[], kept: readonly ShardResult[]): Promise<ShardGroupResult> {
    const context = Context.current();
    const [firstFailure, ...otherFailures] = failures;
    if (firstFailure !== undefined) {
      kept.forEach(forgetEnded);
      // The thrown error does not name its shard: said here, with every other member's failure.
      context.log.warn(`shard ${firstFailure.shardId} failed, and with it its group (${settled.length} shards; its other members stopped and checkpointed): ${describeError(firstFailure.error)}`);
      for (const other of otherFailures) {
        context.log.warn(`shard ${other.shardId} of a group failed too (the group fails with shard ${firstFailure.shardId}'s error): ${describeError(other.error)}`);
      }
      // The member's own error: Temporal classifies it as it would the shard's alone.
      throw firstFailure.error;
    }
    const results: ShardResult[] = [];
    for (const member of settled) {
      if (member.status === 'fulfilled') {
        results.push(member.value);
        continue;
      }
      // Only a cancellation is left: every member has checkpointed.
      if (!cancelledByWorkflow(context.cancellationSignal.reason)) kept.forEach(forgetEnded);
      await context.cancelled;
      throw member.reason;
    }
    // The group's result answers for its members from now on: the cache keeps room for groups still running.
    kept.forEach(forgetEnded);
    return { results };
  }

  const broadcast = createWeightBroadcastActivities({
    node: deps.node,
    heartbeatIntervalMs: deps.heartbeatIntervalMs,
    weightsDir: deps.weightsDir,
    requireRun,
    engineFor,
    trainer,
    everyRank,
    exportWeights,
  });

  return failingFast<GpuNodeActivities>({
    ...broadcast,
    async runRolloutShard(input) {
      requireRun(input.runId);
      return runShard(input, {
        stop: new AbortController(),
        heartbeat: (progress, loop) => withHeartbeat(deps.heartbeatIntervalMs, progress, loop),
        member: false,
        keep: rememberEnded,
      });
    },

    runRolloutShards: runShardGroup,

    async stopShards({ runId, shardIds }) {
      requireRun(runId);
      const stopped: string[] = [];
      const waits: Promise<ShardResult | undefined>[] = [];
      for (const id of shardIds) {
        const shard = runningShards.get(id);
        if (shard === undefined) {
          const ended = endedOutcomes.get(id);
          if (ended !== undefined) waits.push(Promise.resolve(ended));
          continue;
        }
        shard.stop.abort(new Error(`shard ${id} stopped by its workflow`));
        stopped.push(id);
        waits.push(shard.checkpointed);
      }
      // Answered once the stopped shards have checkpointed every sample: the workflow settles them
      // with these outcomes at once instead of waiting for each shard's cancellation to be recorded.
      const outcomes = (await Promise.all(waits)).filter((outcome): outcome is ShardResult => outcome !== undefined);
      return { stopped, checkpointed: outcomes.map((outcome) => outcome.shardId), outcomes };
    },

    async readKvCapacity({ runId, ranks }) {
      requireRun(runId);
      const reads = await Promise.all(ranks.map(async (rank) => ({ rank, tokens: await kvCapacityOf(rank, engineFor(rank)) })));
      return reads.flatMap(({ rank, tokens }) => (tokens === undefined ? [] : [{ rank, tokens }]));
    },

    releaseRankMemory,
    resumeRankMemory,
    syncRankWeights,

    async releaseNodeMemory({ runId, ranks, tags }) {
      await everyRank(ranks.map((rank) => releaseRankMemory({ runId, rank, tags })));
      return { ranks, tags, state: 'released' as const };
    },

    async resumeNodeMemory({ runId, ranks, tags }) {
      const served: RankWeightVersion[] = [];
      await everyRank(ranks.map(async (rank) => void served.push(await resumeRank({ runId, rank, tags }))));
      return { ranks, tags, state: 'resident' as const, served: served.sort((a, b) => a.rank - b.rank) };
    },

    async syncNodeWeights({ runId, ranks, version }) {
      await everyRank(ranks.map((rank) => syncRankWeights({ runId, rank, version })));
      return { ranks, version };
    },

    async syncAndReloadNode({ runId, ranks, version, reload }) {
      checkSubset('ranks to reload', reload, ranks, { universeName: 'the ranks to sync' });
      const reloading = new Set(reload);
      await everyRank(
        ranks.map(async (rank) => {
          if (reloading.has(rank)) await resumeRankMemory({ runId, rank, tags: ['weights'] });
          await syncRankWeights({ runId, rank, version });
          if (reloading.has(rank)) await resumeRankMemory({ runId, rank, tags: ['kv_cache'] });
        }),
      );
      return { ranks, version, reloaded: reload };
    },

    async trainerOnload({ runId, releaseRanks }) {
      requireRun(runId);
      const released = releaseRanks ?? [];
      await everyRank(released.map((rank) => releaseRankMemory({ runId, rank, tags: [...ALL_MEMORY_TAGS] })));
      await withHeartbeat(deps.heartbeatIntervalMs, () => ({ onloading: true }), () => trainer().onload());
      return { node: deps.node, state: 'onloaded' as const, ...(releaseRanks === undefined ? {} : { released }) };
    },

    async trainStep({ runId, iteration, fromVersion, leader, maxTokenLag }) {
      requireRun(runId);
      const node = trainer();
      const newVersion = fromVersion + 1;
      const before = engineAnswer(trainerStatusSchema, await node.status(), `trainer on node ${deps.node}: status`);
      let loss: number | null = null;
      // Idempotent: a retry after the step already ran (the trainer persists its version) does not train twice.
      if (before.weightVersion < newVersion) {
        if (before.weightVersion !== fromVersion) {
          throw ApplicationFailure.nonRetryable(
            `trainer on node ${deps.node} holds weights v${before.weightVersion}, expected v${fromVersion} for iteration ${iteration}`,
            'TrainerVersionMismatch',
          );
        }
        const store = deps.store(runId);
        const batch = await store.readBatch(iteration);
        const trajectories = batchTrajectories(await store.readSamples(batch.sampleIds), fromVersion, maxTokenLag);
        const result = engineAnswer(
          trainStepResultSchema,
          await withHeartbeat(deps.heartbeatIntervalMs, () => ({ iteration, training: true }), () =>
            node.trainStep(
              { iteration, fromVersion, sampleIds: batch.sampleIds, totalTokens: batch.totalTokens, ...(trajectories === undefined ? {} : { trajectories }) },
              Context.current().cancellationSignal,
            ),
          ),
          `trainer on node ${deps.node}: train step of iteration ${iteration}`,
        );
        if (result.newVersion !== newVersion || result.trainedSamples !== batch.sampleIds.length) {
          throw engineProtocolError(
            `trainer on node ${deps.node} answered the train step of iteration ${iteration} (v${fromVersion} -> v${newVersion}, ${batch.sampleIds.length} samples) with v${result.newVersion}, ${result.trainedSamples} samples`,
          );
        }
        loss = result.loss;
      }
      if (leader && deps.exportOnTrainStep !== false) await exportWeights(runId, newVersion);
      return { newVersion, loss };
    },

    async trainerOffload({ runId }) {
      requireRun(runId);
      await withHeartbeat(deps.heartbeatIntervalMs, () => ({ offloading: true }), () => trainer().offload());
      return { node: deps.node, state: 'offloaded' as const };
    },
  });
}
