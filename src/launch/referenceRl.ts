/**
 * The reference RL run: reference engine processes (two rollout ranks and the trainer), the real
 * pipeline on a real Temporal dev server, the digits environment. Shared by the test
 * (test/pipeline/referenceRl.test.ts) and the benchmark (scripts/reference-rl.ts).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import type { WorkflowHandle } from '@temporalio/client';
import { startReferenceEngine, type ReferenceEngineOptions, type ReferenceEngineProcess } from '../engines/reference/launch';
import { iterationWorkflowId } from '../contract/naming';
import type { IterationResult, RunStatus } from '../contract/types';
import { lagSummary, mergeLagHistograms, type LagHistogram, type LagSummary, type StalenessPolicy } from '../gpu/staleness';
import type { AuditReport, SampleRecord } from '../store';
import { weightsDir } from '../workers/runtime';
import type { RunSummary } from '../workflows/run';
import type { PipelineEnv } from './localPipeline';
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
  /** Overrides of engine.weightSync (e.g. more attempts for fault tests). */
  weightSync?: Record<string, unknown>;
  /** The preset file; default examples/reference-rl.yaml. */
  preset?: string;
  /** Options of every engine process (rollout ranks and trainer), e.g. weight-sync timeouts. */
  engineOptions?: ReferenceEngineOptions;
  /** Options of the trainer process only (its port stays the same across a restart). */
  trainerOptions?: ReferenceEngineOptions;
  /** Runs beside the run (fault injection): may kill and restart engines through `engines`. */
  during?: (run: DuringRun) => Promise<void>;
  /** rollout.staleness.policy; default: the config's ('resume'). */
  staleness?: StalenessPolicy;
}

/** The engine processes of a running reference RL run, for fault tests. */
export interface DuringRun {
  /** [rank 0, rank 1, trainer], current processes. */
  engines: ReferenceEngineProcess[];
  /** SIGKILLs engine `index` (no goodbye: its sockets close as the kernel reaps it). */
  kill(index: number): Promise<void>;
  /** Starts engine `index` again on its port, with the same options. */
  restart(index: number): Promise<void>;
  handle: WorkflowHandle;
}

export interface ReferenceRlResult {
  summary: RunSummary;
  /** Mean reward of each iteration's training batch, in iteration order. */
  rewardPerIteration: number[];
  /** Weight versions that generated the batch's turns, per iteration (staleness shows here). */
  versionsPerIteration: number[][];
  /** Samples moved off released ranks at each iteration's shrink. */
  migratedPerIteration: number[];
  /** Version lag of the trained tokens over the run (from the batch manifests). */
  tokenLag: LagSummary;
  /** The run's status at its end (samples admitted / trained / dropped, staleness figures). */
  status: RunStatus;
  /** The trained samples of every iteration, as stored. */
  batches: SampleRecord[][];
  /** Every sample of the run at its end (trained, completed, still running), as stored. */
  samples: SampleRecord[];
  /** Weight versions exported to files (`weights/v<N>`), ascending. */
  exportedVersions: number[];
  /** Weight-update groups opened (broadcast sync): their manifests in the store. */
  groupsOpened: number;
  /** The store's exactly-once audit at the end of the run. */
  audit: AuditReport;
  /** The weight version every engine serves at the end ([rank 0, rank 1]). */
  engineVersions: number[];
  seconds: number;
}

export const REFERENCE_RL_PRESET = path.join(repoRoot(), 'examples', 'reference-rl.yaml');
export const REFERENCE_RL_BROADCAST_PRESET = path.join(repoRoot(), 'examples', 'reference-rl-broadcast.yaml');

/** examples/reference-rl.yaml with this run's endpoints, iterations and batch size. */
export function referenceRlConfig(options: ReferenceRlOptions, rollout: readonly string[], trainer: string): Record<string, unknown> {
  const preset = parse(readFileSync(options.preset ?? REFERENCE_RL_PRESET, 'utf8')) as Record<string, unknown> & { engine: Record<string, Record<string, unknown>> };
  const kind = options.kind ?? 'sglang';
  return {
    ...preset,
    run: { id: options.runId ?? `reference-rl-${kind}`, iterations: options.iterations },
    ...(options.staleness === undefined ? {} : { rollout: { ...(preset.rollout as Record<string, unknown> | undefined), staleness: { policy: options.staleness } } }),
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
      ...(options.weightSync === undefined ? {} : { weightSync: { ...preset.engine.weightSync, ...options.weightSync } }),
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
    // Three PyTorch processes importing torch at once take minutes on a shared 2-core machine.
    const launchOptions = (index: number): ReferenceEngineOptions => ({ device: 'cpu', startTimeoutMs: 300_000, ...delay, ...options.engineOptions, ...(index === 2 ? options.trainerOptions : {}) });
    const launches = await Promise.allSettled([0, 1, 2].map((index) => startReferenceEngine(launchOptions(index))));
    for (const s of launches) if (s.status === 'fulfilled') engines.push(s.value);
    const failed = launches.find((s) => s.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    const [rank0, rank1, trainer] = engines as [ReferenceEngineProcess, ReferenceEngineProcess, ReferenceEngineProcess];
    const context = env.context(referenceRlConfig(options, [rank0.url, rank1.url], trainer.url));
    const workers = await env.startWorkers(context);
    const started = Date.now();
    try {
      const { handle } = await env.startRun(context);
      const ports = engines.map((engine) => Number(new URL(engine.url).port));
      const during = options.during?.({
        engines,
        handle,
        kill: async (index) => {
          process.kill(engines[index]!.pid, 'SIGKILL');
          await engines[index]!.stop();
        },
        restart: async (index) => {
          engines[index] = await startReferenceEngine({ ...launchOptions(index), port: ports[index]! });
        },
      });
      // A failing fault script fails the test; the run's result is awaited either way.
      during?.catch(() => undefined);
      const summary = (await handle.result()) as RunSummary;
      await during;
      const seconds = (Date.now() - started) / 1000;
      const store = env.store(context);
      const rewardPerIteration: number[] = [];
      const versionsPerIteration: number[][] = [];
      const migratedPerIteration: number[] = [];
      let tokenLags: LagHistogram = {};
      const batches: SampleRecord[][] = [];
      for (let iteration = 0; iteration < summary.iterations; iteration++) {
        const batch = await store.readBatch(iteration);
        tokenLags = mergeLagHistograms(tokenLags, batch.tokenLags ?? {});
        const samples = await store.readSamples(batch.sampleIds);
        batches.push(samples);
        const stats = (await env.client.workflow.getHandle(iterationWorkflowId(context.runId, iteration)).result()) as IterationResult;
        migratedPerIteration.push(stats.stats.migrated);
        rewardPerIteration.push(samples.reduce((sum, s) => sum + (s.reward ?? Number.NaN), 0) / samples.length);
        versionsPerIteration.push([...new Set(samples.flatMap((s) => s.turns.map((t) => t.weightVersion)))].sort((a, b) => a - b));
      }
      const samples = await store.readSamples(await store.listSampleIds());
      const weights = weightsDir(context.paths, context.runId);
      const listed = existsSync(weights) ? readdirSync(weights) : [];
      const exportedVersions = listed.flatMap((name) => (/^v(\d+)$/.exec(name) === null ? [] : [Number(name.slice(1))])).sort((a, b) => a - b);
      const groupsOpened = existsSync(path.join(weights, 'broadcast')) ? readdirSync(path.join(weights, 'broadcast')).filter((name) => name.endsWith('.json')).length : 0;
      const audit = await store.audit();
      const engineVersions = await Promise.all(
        engines.slice(0, 2).map(async (engine) => {
          const info = (await (await fetch(`${engine.url}/model_info`)).json()) as { weight_version: string };
          return Number(info.weight_version);
        }),
      );
      const status = (await handle.query('status')) as RunStatus;
      return { summary, rewardPerIteration, versionsPerIteration, migratedPerIteration, tokenLag: lagSummary(tokenLags), status, batches, samples, exportedVersions, groupsOpened, audit, engineVersions, seconds };
    } finally {
      await workers.stop();
    }
  } finally {
    for (const engine of engines) await engine.stop();
  }
}
