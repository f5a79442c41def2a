/**
 * The run spec: what the workflows need from a validated configuration, and nothing else (the
 * workflows never see the config file format).
 */
import type { ParsedRunConfig } from '../config';
import type { BroadcastSyncSpec, RunSpec } from './types';

/** Iterations per run-workflow execution before continue-as-new keeps its history short. */
export const DEFAULT_ITERATIONS_PER_RUN_EXECUTION = 25;

export function buildRunSpec(parsed: ParsedRunConfig, runId: string): RunSpec {
  const { config, layout, maxConcurrentSamples } = parsed;
  return {
    runId,
    layout,
    iterations: config.run.iterations,
    batchSize: config.batchSize,
    asyncRatio: config.asyncRatio,
    maxConcurrentSamples,
    ...(config.rollout.kvCapacityTokensPerRank === undefined ? {} : { kvCapacityTokensPerRank: config.rollout.kvCapacityTokensPerRank }),
    staleness: {
      policy: config.rollout.staleness.policy,
      ...(config.rollout.staleness.maxTokenLag === undefined ? {} : { maxTokenLag: config.rollout.staleness.maxTokenLag }),
    },
    maxTurns: config.maxTurns,
    maxTokens: config.maxTokens,
    environmentTimeoutMs: config.environmentTimeoutSeconds * 1000,
    taskQueuePrefix: config.temporal.taskQueuePrefix,
    heartbeatTimeoutMs: config.temporal.heartbeatTimeoutSeconds * 1000,
    lostNodeTimeoutMs: config.temporal.lostNodeTimeoutSeconds * 1000,
    activityRetry: {
      initialIntervalMs: config.temporal.activityRetry.initialIntervalSeconds * 1000,
      maximumAttempts: config.temporal.activityRetry.maximumAttempts,
    },
    iterationsPerRunExecution: DEFAULT_ITERATIONS_PER_RUN_EXECUTION,
    ...(config.engine.weightSync.mode === 'broadcast' ? { weightSync: broadcastSyncSpec(parsed) } : {}),
  };
}

function broadcastSyncSpec(parsed: ParsedRunConfig): BroadcastSyncSpec {
  const { rollout, trainer, weightSync } = parsed.config.engine;
  const trainerHost = trainer.kind === 'http' ? new URL(trainer.endpoint).hostname.replace(/^\[(.*)\]$/, '$1') : '127.0.0.1';
  return {
    mode: 'broadcast',
    backend: weightSync.backend,
    bucketBytes: Math.max(1, Math.round(weightSync.bucketMiB * 1024 * 1024)),
    timeoutMs: weightSync.timeoutSeconds * 1000,
    attempts: weightSync.attempts,
    fallback: weightSync.fallback,
    masterAddress: weightSync.masterAddress ?? trainerHost,
    layout: rollout.kind === 'vllm' ? 'per_tensor' : 'flattened_bucket',
  };
}
