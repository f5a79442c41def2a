/**
 * The reference RL run: reference engine processes (two rollout ranks and the trainer), the real
 * pipeline on a real Temporal dev server, the digits environment. Shared by the test
 * (test/pipeline/referenceRl.test.ts) and the benchmark (scripts/reference-rl.ts).
 */
import { startReferenceEngine, type ReferenceEngineProcess } from '../../src/engines/reference/launch';
import type { RunSummary } from '../../src/workflows/run';
import type { PipelineEnv } from './pipeline';

export interface ReferenceRlOptions {
  iterations: number;
  batchSize: number;
  turns: number;
  kind?: 'sglang' | 'vllm';
  seed?: number;
}

export interface ReferenceRlResult {
  summary: RunSummary;
  /** Mean reward of each iteration's training batch, in iteration order. */
  rewardPerIteration: number[];
  /** Weight versions that generated the batch's turns, per iteration (staleness shows here). */
  versionsPerIteration: number[][];
  seconds: number;
}

/** The run config (the same shape as examples/reference-rl.yaml, with this run's endpoints). */
export function referenceRlConfig(options: ReferenceRlOptions, rollout: readonly string[], trainer: string): Record<string, unknown> {
  return {
    run: { id: `reference-rl-${options.kind ?? 'sglang'}`, iterations: options.iterations },
    pool: { nodes: 1, gpusPerNode: 2 },
    strategy: 'multiplexed',
    rollout: { gpus: 'all', gpusPerRank: 1 },
    train: { gpus: [0] },
    batchSize: options.batchSize,
    asyncRatio: 1,
    maxTurns: options.turns,
    maxTokens: 4 * options.turns,
    engine: {
      rollout: {
        kind: options.kind ?? 'sglang',
        endpoints: rollout,
        ...(options.kind === 'vllm' ? { model: 'timeshare-reference' } : {}),
        sampling: { temperature: 1, maxNewTokensPerTurn: 1 },
      },
      trainer: { kind: 'http', endpoint: trainer },
      environment: { kind: 'digits', turns: options.turns, shift: 3, seed: options.seed ?? 1 },
    },
  };
}

export async function runReferenceRl(env: PipelineEnv, options: ReferenceRlOptions): Promise<ReferenceRlResult> {
  const engines: ReferenceEngineProcess[] = [];
  try {
    const launches = await Promise.allSettled([0, 1, 2].map(() => startReferenceEngine({ device: 'cpu' })));
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
      for (let iteration = 0; iteration < summary.iterations; iteration++) {
        const batch = await store.readBatch(iteration);
        const samples = await store.readSamples(batch.sampleIds);
        rewardPerIteration.push(samples.reduce((sum, s) => sum + (s.reward ?? Number.NaN), 0) / samples.length);
        versionsPerIteration.push([...new Set(samples.flatMap((s) => s.turns.map((t) => t.weightVersion)))].sort((a, b) => a - b));
      }
      return { summary, rewardPerIteration, versionsPerIteration, seconds };
    } finally {
      await workers.stop();
    }
  } finally {
    for (const engine of engines) await engine.stop();
  }
}
