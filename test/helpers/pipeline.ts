/**
 * Test harness for the pipeline: a real Temporal dev server, the real workers (in this process)
 * over simulated engines, a fresh state folder. Used by the pipeline tests; no mocks.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, type Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { parseRunConfig, type ParsedRunConfig } from '../../src/config';
import { orchestratorQueue, runWorkflowId } from '../../src/pipeline/naming';
import { buildRunSpec } from '../../src/pipeline/spec';
import type { RunSpec } from '../../src/pipeline/types';
import { startDevServer, type DevServer } from '../../src/temporal/devServer';
import { PAYLOAD_CONVERTER_PATH } from '../../src/temporal/security';
import { createGpuNodeWorkers } from '../../src/workers/gpuNode';
import type { WorkerContext } from '../../src/workers/options';
import { createOrchestratorWorker, WORKFLOWS_PATH } from '../../src/workers/orchestrator';
import { runtimePaths, storeCache } from '../../src/workers/runtime';
import type { FsTrajectoryStore } from '../../src/store';

// Workers log every state change at INFO: keep test output to warnings and errors.
let runtimeInstalled = false;
function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger('WARN') });
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;
/** Bundling the workflows takes seconds: do it once per test file. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, payloadConverterPath: PAYLOAD_CONVERTER_PATH, logger: { log: () => undefined, info: () => undefined, warn: () => undefined, error: console.error, debug: () => undefined, trace: () => undefined } });
  return bundle;
}

/** A small, fast config: 1 node × 4 GPUs, ranks of 1 GPU, time scale so a turn is a few ms. */
export function smallConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    run: { id: 'test-run', iterations: 2 },
    pool: { nodes: 1, gpusPerNode: 4 },
    strategy: 'multiplexed',
    rollout: { gpus: 'all', gpusPerRank: 1 },
    train: { gpus: [0, 1] },
    batchSize: 8,
    asyncRatio: 1,
    maxTurns: 8,
    maxTokens: 32768,
    simulation: {
      timeScale: 0.002,
      workload: {
        turns: { median: 3, p90: 7 },
        completionTokensPerTurn: { median: 150, p90: 600 },
        envStepMs: { median: 300, p90: 1200 },
      },
    },
    ...overrides,
  };
}

export interface PipelineEnv {
  server: DevServer;
  client: Client;
  stateDir: string;
  context(raw: Record<string, unknown>, runId?: string): WorkerContext;
  /** Starts the orchestrator and every gpu-node worker for the config, in this process. */
  startWorkers(context: WorkerContext): Promise<RunningWorkers>;
  store(context: WorkerContext): FsTrajectoryStore;
  spec(context: WorkerContext): RunSpec;
  /** Starts the run workflow for the config (the same call `timeshare start` makes). */
  startRun(context: WorkerContext): Promise<{ spec: RunSpec; handle: WorkflowHandle }>;
  close(): Promise<void>;
}

export interface RunningWorkers {
  workers: Worker[];
  stop(): Promise<void>;
}

export async function startPipelineEnv(): Promise<PipelineEnv> {
  quietRuntime();
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-test-'));
  const server = await startDevServer({ headless: true, logFile: path.join(stateDir, 'temporal.log') });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const running: RunningWorkers[] = [];

  const env: PipelineEnv = {
    server,
    client,
    stateDir,
    context(raw, runId) {
      const parsed: ParsedRunConfig = parseRunConfig({ ...raw, store: { dir: path.join(stateDir, 'store') } }, '<test>');
      const id = runId ?? (parsed.config.run.id as string);
      return { parsed, runId: id, paths: runtimePaths(parsed.config, stateDir), temporal: { address: server.address, namespace: 'default' } };
    },
    async startWorkers(context) {
      const nativeConnection = await NativeConnection.connect({ address: server.address });
      const workers: Worker[] = [await createOrchestratorWorker(nativeConnection, context, { workflowBundle: await workflowBundle(), batchPollMs: 50 })];
      for (let node = 0; node < context.parsed.layout.nodes; node++) {
        try {
          workers.push(...(await createGpuNodeWorkers(nativeConnection, context, node)));
        } catch (error) {
          if (!String(error).includes('nothing for its worker to serve')) throw error;
        }
      }
      const runs = workers.map((worker) => worker.run());
      let stopped: Promise<void> | undefined;
      const handle: RunningWorkers = {
        workers,
        stop() {
          stopped ??= (async () => {
            for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
            const results = await Promise.allSettled(runs);
            await nativeConnection.close();
            const failed = results.find((result) => result.status === 'rejected');
            if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
          })();
          return stopped;
        },
      };
      running.push(handle);
      return handle;
    },
    store(context) {
      return storeCache(context.paths)(context.runId);
    },
    spec(context) {
      return buildRunSpec(context.parsed, context.runId);
    },
    async startRun(context) {
      const spec = buildRunSpec(context.parsed, context.runId);
      const handle = await client.workflow.start('runWorkflow', {
        workflowId: runWorkflowId(spec.runId),
        taskQueue: orchestratorQueue(spec.taskQueuePrefix),
        args: [{ spec }],
      });
      return { spec, handle };
    },
    async close() {
      // Stop the server and remove the folder whatever else fails, then report the failure.
      try {
        for (const handle of running) await handle.stop();
        await connection.close();
      } finally {
        await server.stop();
        rmSync(stateDir, { recursive: true, force: true });
      }
    },
  };
  return env;
}
