/**
 * One benchmark point: a run of `iterations` iterations on a real Temporal dev server, with the
 * real workflows and workers (in this process, or one child process per worker as deployed) over
 * near-zero-duration simulated engines. Figures come from the recorded histories, the store and
 * /proc, after the run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { NativeConnection, type Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { parseRunConfig } from '../config';
import { checkPostcondition } from '../gpu/validation';
import { iterationWorkflowId, orchestratorQueue, runWorkflowId } from '../pipeline/naming';
import { buildRunSpec } from '../pipeline/spec';
import { FsTrajectoryStore } from '../store';
import { REPO_ROOT, type DevServer } from '../temporal/devServer';
import { createGpuNodeWorkers } from '../workers/gpuNode';
import type { WorkerContext } from '../workers/options';
import { createOrchestratorWorker } from '../workers/orchestrator';
import { runtimePaths } from '../workers/runtime';
import { benchConfig, type BenchPoint } from './benchConfig';
import { executionAttempt, executionSpan, historyBytes, iterationMoments, type IterationMoments } from './historyFigures';
import { cpuMs, rssBytes, RssSampler } from './procStats';

export type WorkerMode = 'in-process' | 'processes';

const EventType = temporal.api.enums.v1.EventType;

export interface BenchEnv {
  server: DevServer;
  client: Client;
  bundle: WorkflowBundleWithSourceMap;
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
}

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
  const workers = mode === 'in-process' ? await startInProcess(env, context) : await startProcesses(env, raw, dir, parsed.layout.nodes, options.log);
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
    };
  } finally {
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
  const connection = await NativeConnection.connect({ address: env.server.address });
  const workers: Worker[] = [await createOrchestratorWorker(connection, context, { workflowBundle: env.bundle })];
  for (let node = 0; node < context.parsed.layout.nodes; node++) workers.push(...(await createGpuNodeWorkers(connection, context, node)));
  const runs = workers.map((worker) => worker.run());
  return {
    pids: [process.pid],
    async stop() {
      for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
      const results = await Promise.allSettled(runs);
      await connection.close();
      const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    },
  };
}

/** One orchestrator and one gpu-node worker process per node, through the CLI, as deployed. */
async function startProcesses(env: BenchEnv, raw: Record<string, unknown>, dir: string, nodes: number, log: (line: string) => void): Promise<StartedWorkers> {
  const configPath = path.join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(raw, null, 2));
  const cli = path.join(REPO_ROOT, 'bin', 'timeshare');
  const common = ['--address', env.server.address, '--state-dir', dir, '--exit-with-parent'];
  const children: { name: string; child: ChildProcess; logFile: string }[] = [];
  const spawnWorker = (name: string, args: string[]): void => {
    const logFile = path.join(dir, `${name}.log`);
    const fd = openSync(logFile, 'a');
    const child = spawn(cli, [...args, ...common], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    children.push({ name, child, logFile });
    child.once('exit', (code, signal) => {
      if (!stopping) log(`  ${name} worker (pid ${child.pid}) exited during the run (code ${code}, signal ${signal}); log ${logFile}:\n${tail(logFile)}`);
    });
  };
  let stopping = false;
  const stop = async (): Promise<void> => {
    stopping = true;
    await Promise.all(children.map(({ child }) => stopChild(child)));
  };
  try {
    spawnWorker('orchestrator', ['worker', 'orchestrator', configPath]);
    for (let node = 0; node < nodes; node++) spawnWorker(`gpu-node-${node}`, ['worker', 'gpu-node', configPath, '--node', String(node)]);
    const deadline = Date.now() + 120_000;
    for (const { name, child, logFile } of children) {
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} worker exited early; log ${logFile}:\n${tail(logFile)}`);
        if (readLog(logFile).includes('worker for run')) break;
        if (Date.now() > deadline) throw new Error(`${name} worker not ready in 120 s; log ${logFile}:\n${tail(logFile)}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    log(`  ${children.length} worker processes ready (1 orchestrator, ${nodes} gpu-node)`);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    pids: children.map(({ child }) => child.pid!),
    stop,
  };
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log yet)';
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const killed = await Promise.race([exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000))]);
  if (!killed) {
    child.kill('SIGKILL');
    await exited;
  }
}
