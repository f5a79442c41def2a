/**
 * GPU-node activities: run on the worker that owns a node's GPUs, against its local engines.
 *
 * - runRolloutShard: the agent loop for a set of samples on one rank. Checkpoints every sample
 *   at each turn boundary; on cancellation aborts in-flight generation and checkpoints the
 *   partial turn (the prefix is kept and resumes wherever the sample goes next).
 * - memory / weight / trainer activities: thin, idempotent wrappers over the engines, with the
 *   engine's answers validated (they are input like any other).
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { existsSync } from 'node:fs';
import {
  type MemoryTag,
  engineStatusSchema,
  trainerStatusSchema,
  trainStepResultSchema,
  turnResultSchema,
  type AgentEnvironment,
  type RolloutEngine,
  type Trainer,
} from '../engines/types';
import { checkPostcondition } from '../gpu/validation';
import type { GpuNodeActivities } from '../pipeline/activities';
import type { RankMemoryInput, ShardInput, ShardOutcome, WeightSyncInput } from '../pipeline/types';
import { contextTokens, type SampleRecord, type TrajectoryStore } from '../store';
import { failingFast } from './failFast';
import { withHeartbeat } from './heartbeat';

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
  now(): number;
}

/** An activity addressed to a rank or node this worker does not own: routing is wrong, retry cannot help. */
function notOwned(what: string, node: number): ApplicationFailure {
  return ApplicationFailure.nonRetryable(`${what} is not served by gpu-node ${node}; check the layout the workers were started with`, 'WrongNode');
}

type SampleEnd = { kind: 'completed' } | { kind: 'dropped'; reason: string } | { kind: 'unfinished' };

export function createGpuNodeActivities(deps: GpuNodeDeps): GpuNodeActivities {
  /** Shards running in this process, by id: stopShards aborts them directly. */
  const runningShards = new Map<string, AbortController>();

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
  const trainer = (): Trainer => {
    if (deps.trainer === undefined) throw notOwned('the trainer', deps.node);
    return deps.trainer;
  };

  async function runSample(input: ShardInput, engine: RolloutEngine, record: SampleRecord, signal: AbortSignal): Promise<SampleEnd> {
    const store = deps.store(input.runId);
    const attempt = Context.current().info.attempt;
    let current = record;
    for (;;) {
      if (signal.aborted) return { kind: 'unfinished' };
      const simulatedAgeMs = (deps.now() - current.startedAtMs) / deps.timeScale;
      if (simulatedAgeMs > input.environmentTimeoutMs) {
        await store.dropSamples([current.id], 'environment-timeout');
        return { kind: 'dropped', reason: 'environment-timeout' };
      }
      const turn = current.turns.length;
      const context = contextTokens(current);
      if (turn >= input.maxTurns || context >= input.maxTokens) {
        // Truncated trajectories still end in a batch, with the reward the environment gave so far (0).
        await store.markCompleted(current.id, input.shardId, 0, deps.now());
        return { kind: 'completed' };
      }
      const prefixTokens = current.partial?.turn === turn ? current.partial.tokens : 0;
      const request = {
        requestId: `${input.shardId}:${current.id}:${turn}:${attempt}`,
        sampleId: current.id,
        turn,
        contextTokens: context,
        prefixTokens,
        maxNewTokens: Math.max(1, input.maxTokens - context),
      };
      const parsed = turnResultSchema.safeParse(await engine.generate(request, signal));
      if (!parsed.success) {
        throw ApplicationFailure.nonRetryable(
          `rank ${input.rank} engine returned a malformed turn for sample ${current.id}: ${parsed.error.message}`,
          'EngineProtocolError',
        );
      }
      const result = parsed.data;
      if (result.requestId !== request.requestId) {
        throw ApplicationFailure.nonRetryable(
          `rank ${input.rank} engine answered request ${result.requestId} to request ${request.requestId}`,
          'EngineProtocolError',
        );
      }
      const generated = prefixTokens + result.outputTokens;
      if (result.finishReason === 'abort') {
        current = { ...current, partial: { turn, tokens: generated, weightVersion: result.weightVersion, rank: input.rank } };
        await store.checkpoint(current, input.shardId);
        return { kind: 'unfinished' };
      }
      let step;
      try {
        step = await deps.environment.step(current.id, turn, generated, signal);
      } catch (error) {
        if (!signal.aborted) throw error;
        // Stopped during the tool call: keep the whole generated turn; it resumes with 0 new tokens.
        current = { ...current, partial: { turn, tokens: generated, weightVersion: result.weightVersion, rank: input.rank } };
        await store.checkpoint(current, input.shardId);
        return { kind: 'unfinished' };
      }
      const { partial: _finishedPartial, ...rest } = current;
      current = {
        ...rest,
        turns: [
          ...current.turns,
          { turn, generatedTokens: generated, observationTokens: step.observationTokens, weightVersion: result.weightVersion, rank: input.rank },
        ],
      };
      await store.checkpoint(current, input.shardId);
      if (step.done) {
        await store.markCompleted(current.id, input.shardId, step.reward ?? 0, deps.now());
        return { kind: 'completed' };
      }
    }
  }

  async function releaseRankMemory({ runId, rank, tags }: RankMemoryInput & { tags: MemoryTag[] }): Promise<void> {
    requireRun(runId);
    const engine = engineFor(rank);
    await withHeartbeat(deps.heartbeatIntervalMs, () => ({ rank, releasing: tags }), () => engine.releaseMemory(tags));
    const status = engineStatusSchema.parse(await engine.status());
    checkPostcondition(`rank ${rank} released ${tags.join('+')}`, tags.every((tag) => !status.resident.includes(tag)), () => JSON.stringify(status));
  }

  async function resumeRankMemory({ runId, rank, tags }: RankMemoryInput & { tags: MemoryTag[] }): Promise<void> {
    requireRun(runId);
    const engine = engineFor(rank);
    await withHeartbeat(deps.heartbeatIntervalMs, () => ({ rank, resuming: tags }), () => engine.resumeMemory(tags));
    const status = engineStatusSchema.parse(await engine.status());
    checkPostcondition(`rank ${rank} resumed ${tags.join('+')}`, tags.every((tag) => status.resident.includes(tag)), () => JSON.stringify(status));
  }

  async function syncRankWeights({ runId, rank, version }: WeightSyncInput): Promise<void> {
    requireRun(runId);
    const engine = engineFor(rank);
    const path = deps.weightsPath(runId, version);
    await withHeartbeat(deps.heartbeatIntervalMs, () => ({ rank, version }), () => engine.updateWeights(version, path));
    const status = engineStatusSchema.parse(await engine.status());
    checkPostcondition(`rank ${rank} serves weights v${version}`, status.weightVersion === version, () => JSON.stringify(status));
  }

  return failingFast<GpuNodeActivities>({
    async runRolloutShard(input) {
      requireRun(input.runId);
      const engine = engineFor(input.rank);
      const store = deps.store(input.runId);
      const context = Context.current();
      // A retried shard finds some of its samples already settled: claim only the live ones.
      const found = await store.readSamples(input.sampleIds);
      const live = found.filter((record) => record.status === 'running').map((record) => record.id);
      if (live.length > 0) await store.claim(live, input.shardId);
      const records = await store.readSamples(input.sampleIds);
      const outcome: ShardOutcome = { shardId: input.shardId, completed: [], unfinished: [], dropped: [] };
      const stop = new AbortController();
      // A retry of the same shard supersedes an attempt still running here (the store fences it).
      runningShards.set(input.shardId, stop);
      const signal = AbortSignal.any([context.cancellationSignal, stop.signal]);
      const progress = () => ({
        completed: outcome.completed.length,
        dropped: outcome.dropped.length,
        running: input.sampleIds.length - outcome.completed.length - outcome.dropped.length - outcome.unfinished.length,
      });
      try {
        await withHeartbeat(deps.heartbeatIntervalMs, progress, () =>
          Promise.all(
            records.map(async (record) => {
              if (record.status === 'completed') return void outcome.completed.push(record.id);
              if (record.status === 'dropped') return void outcome.dropped.push({ id: record.id, reason: record.dropReason ?? 'unknown' });
              const end = await runSample(input, engine, record, signal);
              if (end.kind === 'completed') outcome.completed.push(record.id);
              else if (end.kind === 'dropped') outcome.dropped.push({ id: record.id, reason: end.reason });
              else outcome.unfinished.push(record.id);
            }),
          ),
        );
      } finally {
        if (runningShards.get(input.shardId) === stop) runningShards.delete(input.shardId);
      }
      if (context.cancellationSignal.aborted) {
        // Every sample is checkpointed: report the cancellation so the workflow moves them on.
        await context.cancelled;
      }
      // Stopped directly (stopShards): every sample is checkpointed; the outcome says which are unfinished.
      checkPostcondition(
        `shard ${input.shardId}: every sample accounted for`,
        outcome.completed.length + outcome.dropped.length + outcome.unfinished.length === input.sampleIds.length,
        () => JSON.stringify(progress()),
      );
      return outcome;
    },

    async stopShards({ runId, shardIds }) {
      requireRun(runId);
      const stopped: string[] = [];
      for (const id of shardIds) {
        const shard = runningShards.get(id);
        if (shard === undefined) continue;
        shard.abort(new Error(`shard ${id} stopped by its workflow`));
        stopped.push(id);
      }
      return { stopped };
    },

    releaseRankMemory,
    resumeRankMemory,
    syncRankWeights,

    async releaseNodeMemory({ runId, ranks, tags }) {
      await Promise.all(ranks.map((rank) => releaseRankMemory({ runId, rank, tags })));
    },

    async resumeNodeMemory({ runId, ranks, tags }) {
      await Promise.all(ranks.map((rank) => resumeRankMemory({ runId, rank, tags })));
    },

    async syncNodeWeights({ runId, ranks, version }) {
      await Promise.all(ranks.map((rank) => syncRankWeights({ runId, rank, version })));
    },

    async trainerOnload({ runId }) {
      requireRun(runId);
      await withHeartbeat(deps.heartbeatIntervalMs, () => ({ onloading: true }), () => trainer().onload());
    },

    async trainStep({ runId, iteration, fromVersion, leader }) {
      requireRun(runId);
      const node = trainer();
      const newVersion = fromVersion + 1;
      const before = trainerStatusSchema.parse(await node.status());
      let loss: number | null = null;
      // Idempotent: a retry after the step already ran (the trainer persists its version) does not train twice.
      if (before.weightVersion < newVersion) {
        if (before.weightVersion !== fromVersion) {
          throw ApplicationFailure.nonRetryable(
            `trainer on node ${deps.node} holds weights v${before.weightVersion}, expected v${fromVersion} for iteration ${iteration}`,
            'TrainerVersionMismatch',
          );
        }
        const batch = await deps.store(runId).readBatch(iteration);
        const result = trainStepResultSchema.parse(
          await withHeartbeat(deps.heartbeatIntervalMs, () => ({ iteration, training: true }), () =>
            node.trainStep({ iteration, fromVersion, sampleIds: batch.sampleIds, totalTokens: batch.totalTokens }, Context.current().cancellationSignal),
          ),
        );
        checkPostcondition(`train step of iteration ${iteration}`, result.newVersion === newVersion, () => JSON.stringify(result));
        loss = result.loss;
      }
      if (leader && !existsSync(deps.weightsPath(runId, newVersion))) {
        const exported = await node.exportWeights(newVersion, deps.weightsDir(runId));
        checkPostcondition(`weights v${newVersion} exported where engines load them`, exported.path === deps.weightsPath(runId, newVersion), () => exported.path);
      }
      return { newVersion, loss };
    },

    async trainerOffload({ runId }) {
      requireRun(runId);
      await withHeartbeat(deps.heartbeatIntervalMs, () => ({ offloading: true }), () => trainer().offload());
    },
  });
}
