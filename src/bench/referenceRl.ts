/**
 * The reference RL run: reference engine processes (two rollout ranks and the trainer), the real
 * pipeline on a real Temporal dev server, the digits environment. Shared by the test
 * (test/pipeline/referenceRl.test.ts) and the benchmark (scripts/reference-rl.ts).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { startReferenceEngine, type ReferenceEngineProcess } from '../engines/reference/launch';
import { iterationWorkflowId } from '../pipeline/naming';
import type { IterationResult } from '../pipeline/types';
import type { SampleRecord } from '../store';
import type { RunSummary } from '../workflows/run';
import type { PipelineEnv } from '../launch/localPipeline';
import { repoRoot } from '../sourceFiles';

export interface ReferenceRlOptions {
  /** Run id (and store folder): distinct per run in one Temporal server. Default reference-rl-<kind>. */
  runId?: string;
  iterations: number;
  /** Default: the preset's. */
  batchSize?: number;
  kind?: 'sglang' | 'vllm';
  /** The environment's seed (which digits are shown); default: the preset's. */
  seed?: number;
  /** Turns per trajectory and new tokens per turn; default: the preset's (4 and 1). */
  turns?: number;
  maxNewTokensPerTurn?: number;
  /** Engines sleep this long per token (long turns, so a shrink lands mid-generation). */
  decodeDelayMs?: number;
  /** Turns of exactly maxNewTokensPerTurn tokens. */
  ignoreEos?: boolean;
}

export interface ReferenceRlResult {
  summary: RunSummary;
  /** Mean reward of each iteration's training batch, in iteration order. */
  rewardPerIteration: number[];
  /** Weight versions that generated the batch's turns, per iteration (staleness shows here). */
  versionsPerIteration: number[][];
  /** Samples moved off released ranks at each iteration's shrink. */
  migratedPerIteration: number[];
  /** The trained samples of every iteration, as stored. */
  batches: SampleRecord[][];
  /** Every sample of the run at its end (trained, completed, still running), as stored. */
  samples: SampleRecord[];
  seconds: number;
}

export const REFERENCE_RL_PRESET = path.join(repoRoot(), 'examples', 'reference-rl.yaml');

/** examples/reference-rl.yaml with this run's endpoints, iterations and batch size. */
export function referenceRlConfig(options: ReferenceRlOptions, rollout: readonly string[], trainer: string): Record<string, unknown> {
  const preset = parse(readFileSync(REFERENCE_RL_PRESET, 'utf8')) as Record<string, unknown> & { engine: Record<string, Record<string, unknown>> };
  const kind = options.kind ?? 'sglang';
  return {
    ...preset,
    run: { id: options.runId ?? `reference-rl-${kind}`, iterations: options.iterations },
    ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
    ...(options.turns === undefined ? {} : { maxTurns: options.turns }),
    ...(options.turns === undefined && options.maxNewTokensPerTurn === undefined ? {} : { maxTokens: 1024 }),
    engine: {
      ...preset.engine,
      rollout: {
        ...preset.engine.rollout,
        kind,
        endpoints: rollout,
        ...(kind === 'vllm' ? { model: 'timeshare-reference' } : {}),
        sampling: {
          ...(preset.engine.rollout?.sampling as Record<string, unknown>),
          ...(options.maxNewTokensPerTurn === undefined ? {} : { maxNewTokensPerTurn: options.maxNewTokensPerTurn }),
          ...(options.ignoreEos === undefined ? {} : { ignoreEos: options.ignoreEos }),
        },
      },
      trainer: { ...preset.engine.trainer, endpoint: trainer },
      environment: {
        ...preset.engine.environment,
        ...(options.seed === undefined ? {} : { seed: options.seed }),
        ...(options.turns === undefined ? {} : { turns: options.turns }),
      },
    },
  };
}

export async function runReferenceRl(env: PipelineEnv, options: ReferenceRlOptions): Promise<ReferenceRlResult> {
  const engines: ReferenceEngineProcess[] = [];
  try {
    const delay = options.decodeDelayMs === undefined ? {} : { decodeDelayMs: options.decodeDelayMs };
    const launches = await Promise.allSettled([0, 1, 2].map(() => startReferenceEngine({ device: 'cpu', ...delay })));
    for (const s of launches) if (s.status === 'fulfilled') engines.push(s.value);
    const failed = launches.find((s) => s.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    const [rank0, rank1, trainer] = engines as [ReferenceEngineProcess, ReferenceEngineProcess, ReferenceEngineProcess];
    const context = env.context(referenceRlConfig(options, [rank0.url, rank1.url], trainer.url));
    const workers = await env.startWorkers(context);
    const started = Date.now();
    try {
      const { handle } = await env.startRun(context);
      const summary = (await handle.result()) as RunSummary;
      const seconds = (Date.now() - started) / 1000;
      const store = env.store(context);
      const rewardPerIteration: number[] = [];
      const versionsPerIteration: number[][] = [];
      const migratedPerIteration: number[] = [];
      const batches: SampleRecord[][] = [];
      for (let iteration = 0; iteration < summary.iterations; iteration++) {
        const batch = await store.readBatch(iteration);
        const samples = await store.readSamples(batch.sampleIds);
        batches.push(samples);
        const stats = (await env.client.workflow.getHandle(iterationWorkflowId(context.runId, iteration)).result()) as IterationResult;
        migratedPerIteration.push(stats.stats.migrated);
        rewardPerIteration.push(samples.reduce((sum, s) => sum + (s.reward ?? Number.NaN), 0) / samples.length);
        versionsPerIteration.push([...new Set(samples.flatMap((s) => s.turns.map((t) => t.weightVersion)))].sort((a, b) => a - b));
      }
      const samples = await store.readSamples(await store.listSampleIds());
      return { summary, rewardPerIteration, versionsPerIteration, migratedPerIteration, batches, samples, seconds };
    } finally {
      await workers.stop();
    }
  } finally {
    for (const engine of engines) await engine.stop();
  }
}
