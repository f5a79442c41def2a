/**
 * One benchmark point: a run of `iterations` iterations on a real Temporal dev server, with the
 * real workflows and workers (in this process, or one child process per worker as deployed) over
 * near-zero-duration simulated engines. Figures come from the recorded histories, the store and
 * /proc, after the run.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { CachedWorkflowBundle } from '../workers/bundle';
import { parseRunConfig } from '../config';
import { checkPostcondition } from '../validation/patterns';
import { iterationWorkflowId, orchestratorQueue, runWorkflowId } from '../contract/naming';
import { buildRunSpec } from '../contract/spec';
import { FsTrajectoryStore } from '../store';
import { startInProcessWorkers } from '../launch/inProcess';
import { startWorkerProcesses } from '../launch/workerProcesses';
import type { DevServer } from '../temporal/devServer';
import type { WorkerContext } from '../workers/options';
import { runtimePaths } from '../workers/runtime';
import { benchConfig, type BenchPoint } from './benchConfig';
import { executionAttempt, executionSpan, historyBytes, iterationMoments, type IterationMoments } from './historyFigures';
import { cpuMs, rssBytes, RssSampler } from './procStats';

export type WorkerMode = 'in-process' | 'processes';

const EventType = temporal.api.enums.v1.EventType;

export interface BenchEnv {
  server: DevServer;
  client: Client;
  bundle: CachedWorkflowBundle;
  /** Scratch folder: one subfolder per point (store, engine state, configs, worker logs). */
  rootDir: string;
}

/** The figures of one iteration (ms; events and bytes of its workflow history). */
export interface IterationFigures {
  iteration: number;
  wallMs: number;
  /** Iteration started → its batch complete in the store (0 if samples carried over complete it). */
  rolloutMs: number;
  /**
   * Batch ready → awaitBatch reported it: the store poll, and when carried-over samples make the
   * batch ready at the start, the iteration's start-up (store reads, admission, shard launches).
   */
  batchSeenLagMs: number;
  /** Transition 1: batch ready → every train node training (offload costs 0 engine time here). */
  batchToTrainMs: number;
  trainMs: number;
  /** Train done → the iteration's last activity (sync + reload, 0 engine time here) done. */
  trainToExpandMs: number;
  /** Transition 2: train done → every rank rolling out again (the next iteration's first shards started). */
  trainToRolloutMs: number | undefined;
  events: number;
  bytes: number;
  workflowTaskTimeouts: number;
  activities: Record<string, number>;
}

export interface PointResult {
  point: BenchPoint;
  mode: WorkerMode;
  iterations: IterationFigures[];
  /** Iterations that completed only after a failed attempt (errors; not in `iterations`). */
  retried: { iteration: number; attempt: number }[];
  /** The run workflow's history (its last execution): events and bytes, and how many iterations it covers. */
  runHistory: { events: number; bytes: number; iterations: number };
  /** CPU ms of the worker processes (in-process: this process) and of the dev server, over the run. */
  workerCpuMs: number;
  serverCpuMs: number;
  workerPeakRssBytes: number;
  /** Worker RSS (bytes) sampled after every `rssEvery` iterations, when asked for. */
  rssByIteration: { iteration: number; rssBytes: number }[];
  runWallMs: number;
  /**
   * In-process workers: how late this process's event loop ran its callbacks over the run (ms,
   * median and p99). Activities, the worker's polling and the routing of workflow activations to
   * and from their threads run on that loop: a late loop is contention every step meets.
   */
  eventLoopDelayMs?: { p50: number; p99: number };
}

/** How often the in-process event loop's delay is sampled (ms). */
const LOOP_DELAY_RESOLUTION_MS = 10;

export interface RunPointOptions {
  timeoutMs: number;
  /** Sample worker RSS at iteration boundaries (the soak). */
  rssEvery?: number;
  /** Sees every fetched history (the script can write them out for a closer look). */
  onHistory?: (workflowId: string, history: temporal.api.history.v1.IHistory) => void;
  log(line: string): void;
}

interface StartedWorkers {
  pids: number[];
  stop(): Promise<void>;
}

export async function runPoint(env: BenchEnv, point: BenchPoint, mode: WorkerMode, options: RunPointOptions): Promise<PointResult> {
  const runId = `bench-r${point.ranks}-b${point.batch}-${Date.now().toString(36)}`;
  const dir = path.join(env.rootDir, runId);
  mkdirSync(dir, { recursive: true });
  const raw = benchConfig(point, runId, path.join(dir, 'store'), env.server.address);
  const parsed = parseRunConfig(raw, `<bench ${runId}>`);
  const context: WorkerContext = {
    parsed,
    runId,
    paths: runtimePaths(parsed.config, dir),
    temporal: { address: env.server.address, namespace: 'default' },
  };
  const workers = mode === 'in-process' ? await startInProcess(env, context) : await startProcesses(env, raw, dir, context, options.log);
  const loopDelay = mode === 'in-process' ? monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS }) : undefined;
  loopDelay?.enable();
  try {
    const sampler = new RssSampler(() => workers.pids);
    const workerCpu0 = sumCpu(workers.pids);
    const serverCpu0 = cpuMs(env.server.pid);
    const spec = buildRunSpec(parsed, runId);
    const started = Date.now();
    const handle = await env.client.workflow.start('runWorkflow', {
      workflowId: runWorkflowId(runId),
      taskQueue: orchestratorQueue(spec.taskQueuePrefix),
      args: [{ spec }],
    });
    const rssByIteration: PointResult['rssByIteration'] = [];
    const watcher = options.rssEvery === undefined ? undefined : watchRss(env.client, runId, point.iterations, options.rssEvery, workers.pids, rssByIteration);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`bench point ${JSON.stringify(point)} did not finish in ${options.timeoutMs} ms`)), options.timeoutMs);
    });
    try {
      await Promise.race([handle.result(), timeout]);
    } finally {
      clearTimeout(timer);
    }
    await watcher;
    const runWallMs = Date.now() - started;
    const workerCpuMs = sumCpu(workers.pids) - workerCpu0;
    const serverCpuMs = cpuMs(env.server.pid) - serverCpu0;
    const workerPeakRssBytes = sampler.stop();
    // The histogram holds the nanoseconds between its timer's runs: the delay is what exceeds the resolution.
    const lateMs = (histogram: IntervalHistogram, percentile: number) => Math.max(0, histogram.percentile(percentile) / 1e6 - LOOP_DELAY_RESOLUTION_MS);
    const eventLoopDelayMs = loopDelay === undefined ? undefined : { p50: lateMs(loopDelay, 50), p99: lateMs(loopDelay, 99) };

    const store = new FsTrajectoryStore(context.paths.storeRoot, runId);
    // An iteration that failed and was retried is an error of the run: counted, and left out of
    // the transition figures (its last attempt resumed from the store, not a normal iteration).
    const moments: (IterationMoments | undefined)[] = [];
    const retried: PointResult['retried'] = [];
    for (let k = 0; k < point.iterations; k++) {
      const workflowId = iterationWorkflowId(runId, k);
      const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
      options.onHistory?.(workflowId, history);
      const attempt = executionAttempt(history);
      if (attempt > 1) {
        retried.push({ iteration: k, attempt });
        options.log(`  iteration ${k} completed at attempt ${attempt}: an earlier attempt failed (see its history in the server or --dump-histories)`);
        moments.push(undefined);
      } else {
        moments.push(iterationMoments(history));
      }
    }
    const iterations: IterationFigures[] = [];
    for (let k = 0; k < point.iterations; k++) {
      const m = moments[k];
      if (m === undefined) continue;
      const batch = await store.readBatch(k);
      const records = await store.readSamples(batch.sampleIds);
      const batchCompleteMs = Math.max(...records.map((record) => record.completedAtMs ?? Number.NaN));
      checkPostcondition(`bench: iteration ${k}'s batch samples have completion times`, Number.isFinite(batchCompleteMs), () => String(batchCompleteMs));
      // Samples completed during the previous iteration's long tail are ready when this one starts.
      const batchReadyMs = Math.max(batchCompleteMs, m.startedMs);
      const next = moments[k + 1];
      iterations.push({
        iteration: k,
        wallMs: m.closedMs - m.startedMs,
        rolloutMs: batchReadyMs - m.startedMs,
        batchSeenLagMs: m.batchSeenMs - batchReadyMs,
        batchToTrainMs: m.trainStartedMs - batchReadyMs,
        trainMs: m.trainDoneMs - m.trainStartedMs,
        trainToExpandMs: m.expandDoneMs - m.trainDoneMs,
        trainToRolloutMs: next === undefined ? undefined : next.rolloutStartedMs - m.trainDoneMs,
        events: m.events,
        bytes: m.bytes,
        workflowTaskTimeouts: m.workflowTaskTimeouts,
        activities: m.activities,
      });
    }
    const runHistory = await env.client.workflow.getHandle(runWorkflowId(runId)).fetchHistory();
    options.onHistory?.(runWorkflowId(runId), runHistory);
    executionSpan(runHistory);
    // The last execution (after any continue-as-new) covers the iterations whose children it saw complete.
    const iterationsInExecution = (runHistory.events ?? []).filter((event) => event.eventType === EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED).length;
    checkPostcondition('bench: the run history saw iterations complete', iterationsInExecution > 0, () => String(iterationsInExecution));
    return {
      point,
      mode,
      iterations,
      retried,
      runHistory: { events: runHistory.events?.length ?? 0, bytes: historyBytes(runHistory), iterations: iterationsInExecution },
      workerCpuMs,
      serverCpuMs,
      workerPeakRssBytes,
      rssByIteration,
      runWallMs,
      ...(eventLoopDelayMs === undefined ? {} : { eventLoopDelayMs }),
    };
  } finally {
    loopDelay?.disable();
    await workers.stop();
  }
}

function sumCpu(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + cpuMs(pid), 0);
}

/** Polls the run's status; records the workers' RSS each time another `every` iterations are done. */
async function watchRss(client: Client, runId: string, total: number, every: number, pids: readonly number[], out: PointResult['rssByIteration']): Promise<void> {
  const handle = client.workflow.getHandle(runWorkflowId(runId));
  let nextMark = every;
  while (nextMark <= total) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    let done: number;
    try {
      const described = await handle.describe();
      if (described.status.name !== 'RUNNING') done = total;
      else done = ((await handle.query('status')) as { iteration: number }).iteration;
    } catch (error) {
      // Queries fail while a continue-as-new hands over to the next execution: try again.
      if (String(error).includes('not found') || String(error).includes('WorkflowNotFound')) continue;
      throw error;
    }
    while (done >= nextMark && nextMark <= total) {
      out.push({ iteration: nextMark, rssBytes: pids.reduce((sum, pid) => sum + rssBytes(pid), 0) });
      nextMark += every;
    }
  }
}

async function startInProcess(env: BenchEnv, context: WorkerContext): Promise<StartedWorkers> {
  const workers = await startInProcessWorkers(context, { workflowBundle: env.bundle });
  return { pids: [process.pid], stop: () => workers.stop() };
}

/** One orchestrator and one gpu-node worker process per node, through the CLI, as deployed. */
async function startProcesses(env: BenchEnv, raw: Record<string, unknown>, dir: string, context: WorkerContext, log: (line: string) => void): Promise<StartedWorkers> {
  const configPath = path.join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(raw, null, 2));
  const workers = startWorkerProcesses({
    configPath,
    address: env.server.address,
    stateDir: dir,
    layout: context.parsed.layout,
    taskQueuePrefix: context.parsed.config.temporal.taskQueuePrefix,
    logDir: dir,
    // Told only of exits we did not ask for.
    onExit: (name, { code, signal }, logFile) => log(`  ${name} worker exited during the run (code ${code}, signal ${signal}); log ${logFile}`),
  });
  const stop = (): Promise<void> => workers.stop();
  try {
    await workers.waitUntilReady(120_000);
    log(`  ${workers.processes.length} worker processes ready (1 orchestrator, ${workers.processes.length - 1} gpu-node)`);
  } catch (error) {
    await stop();
    throw error;
  }
  return { pids: workers.pids(), stop };
}
