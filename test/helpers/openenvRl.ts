/**
 * The agentic OpenEnv run: examples/agentic-openenv.yaml with the vault environment server
 * (engines/openenv-env on OpenEnv's server), two reference rollout engines and the reference
 * trainer (engines/reference, the agent vocabulary), the real pipeline on a real Temporal dev
 * server. Shared by test/pipeline/openenvRl.test.ts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { startOpenEnvServer, type ServerProcess } from '../../src/engines/openenv/launch';
import { REFERENCE_DIR, startReferenceEngine, type ReferenceEngineProcess } from '../../src/engines/reference/launch';
import { iterationWorkflowId } from '../../src/contract/naming';
import type { IterationResult } from '../../src/contract/types';
import type { SampleRecord } from '../../src/store';
import type { RunSummary } from '../../src/workflows/run';
import type { WorkerContext } from '../../src/workers/options';
import type { PipelineEnv, RunningWorkers } from './pipeline';

export const AGENTIC_OPENENV_PRESET = path.join(__dirname, '..', '..', 'examples', 'agentic-openenv.yaml');
export const AGENT_MODEL_CONFIG = path.join(REFERENCE_DIR, 'configs', 'agent.json');

export interface AgenticProcesses {
  rollout: ReferenceEngineProcess[];
  trainer: ReferenceEngineProcess;
  environment: ServerProcess;
  stop(): Promise<void>;
}

/** The environment server, two rollout engines and the trainer, on free ports. */
export async function startAgenticProcesses(options: { decodeDelayMs?: number } = {}): Promise<AgenticProcesses> {
  const delay = options.decodeDelayMs === undefined ? {} : { decodeDelayMs: options.decodeDelayMs };
  const engine = () => startReferenceEngine({ configPath: AGENT_MODEL_CONFIG, device: 'cpu', startTimeoutMs: 300_000, ...delay });
  const launches = await Promise.allSettled([engine(), engine(), engine(), startOpenEnvServer({ startTimeoutMs: 300_000 })]);
  const stoppers = launches.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stop = async () => {
    for (const process of stoppers) await process.stop();
  };
  const failed = launches.find((s) => s.status === 'rejected');
  if (failed !== undefined) {
    await stop();
    throw (failed as PromiseRejectedResult).reason;
  }
  const [rank0, rank1, trainer, environment] = launches.map((s) => (s as PromiseFulfilledResult<unknown>).value) as [ReferenceEngineProcess, ReferenceEngineProcess, ReferenceEngineProcess, ServerProcess];
  return { rollout: [rank0, rank1], trainer, environment, stop };
}

/** examples/agentic-openenv.yaml with these processes' URLs and the run's overrides. */
export function agenticConfig(processes: AgenticProcesses, overrides: { runId: string; iterations: number; batchSize?: number; maxNewTokensPerTurn?: number; temperature?: number }): Record<string, unknown> {
  const preset = parse(readFileSync(AGENTIC_OPENENV_PRESET, 'utf8')) as Record<string, unknown> & { engine: Record<string, Record<string, unknown>> };
  const rollout = preset.engine.rollout ?? {};
  return {
    ...preset,
    run: { id: overrides.runId, iterations: overrides.iterations },
    ...(overrides.batchSize === undefined ? {} : { batchSize: overrides.batchSize }),
    engine: {
      ...preset.engine,
      rollout: {
        ...rollout,
        endpoints: processes.rollout.map((p) => p.url),
        sampling: {
          ...(rollout.sampling as Record<string, unknown>),
          ...(overrides.maxNewTokensPerTurn === undefined ? {} : { maxNewTokensPerTurn: overrides.maxNewTokensPerTurn }),
          ...(overrides.temperature === undefined ? {} : { temperature: overrides.temperature }),
        },
      },
      trainer: { ...preset.engine.trainer, endpoint: processes.trainer.url },
      environment: { ...preset.engine.environment, servers: [{ url: processes.environment.url }] },
    },
  };
}

export interface AgenticRunResult {
  summary: RunSummary;
  rewardPerIteration: number[];
  batches: SampleRecord[][];
  samples: SampleRecord[];
  context: WorkerContext;
  seconds: number;
}

/** Runs the config to its end with workers in this process; reads every batch back from the store. */
export async function runAgentic(env: PipelineEnv, raw: Record<string, unknown>, workers?: RunningWorkers): Promise<AgenticRunResult> {
  const context = env.context(raw);
  const running = workers ?? (await env.startWorkers(context));
  const started = Date.now();
  try {
    const { handle } = await env.startRun(context);
    const summary = (await handle.result()) as RunSummary;
    const seconds = (Date.now() - started) / 1000;
    const store = env.store(context);
    const rewardPerIteration: number[] = [];
    const batches: SampleRecord[][] = [];
    for (let iteration = 0; iteration < summary.iterations; iteration++) {
      const batch = await store.readBatch(iteration);
      const samples = await store.readSamples(batch.sampleIds);
      batches.push(samples);
      (await env.client.workflow.getHandle(iterationWorkflowId(context.runId, iteration)).result()) as IterationResult;
      rewardPerIteration.push(samples.reduce((sum, s) => sum + (s.reward ?? Number.NaN), 0) / samples.length);
    }
    const samples = await store.readSamples(await store.listSampleIds());
    return { summary, rewardPerIteration, batches, samples, context, seconds };
  } finally {
    if (workers === undefined) await running.stop();
  }
}
