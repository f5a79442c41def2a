/**
 * A local pipeline: a real Temporal dev server, the real workers (in this process) over the
 * config's engines, a fresh state folder. Used by the pipeline tests and by scripts
 * (record-histories, reference-rl); no mocks.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { parseRunConfig, type ParsedRunConfig } from '../config';
import { smallRunConfig } from '../config/small';
import { startInProcessWorkers, type InProcessWorkers } from './inProcess';
import { orchestratorQueue, runWorkflowId } from '../contract/naming';
import { buildRunSpec } from '../contract/spec';
import type { RunSpec } from '../contract/types';
import { startDevServer, type DevServer } from '../temporal/devServer';
import { cachedWorkflowBundle, type CachedWorkflowBundle } from '../workers/bundle';
import { installWorkerRuntime } from '../workers/telemetry';
import type { WorkerContext } from '../workers/options';
import { WORKFLOW_BUNDLE_INPUTS } from '../workers/orchestrator';
import { runtimePaths, storeCache } from '../workers/runtime';
import type { FsTrajectoryStore } from '../store';

let bundle: Promise<CachedWorkflowBundle> | undefined;
/** The workflow bundle of the current sources, built once per code version (src/workers/bundle.ts). */
export function workflowBundle(): Promise<CachedWorkflowBundle> {
  bundle ??= cachedWorkflowBundle(WORKFLOW_BUNDLE_INPUTS);
  return bundle;
}

/** A small, fast config: 1 node × 4 GPUs, ranks of 1 GPU, time scale so a turn is a few ms. */
export const smallConfig = smallRunConfig;

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

export type RunningWorkers = InProcessWorkers;

export async function startPipelineEnv(options: { dynamicConfig?: Record<string, string | number | boolean> } = {}): Promise<PipelineEnv> {
  // Workers log every state change at INFO: keep test output to warnings and errors.
  installWorkerRuntime({ logLevel: 'WARN' });
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-test-'));
  const server = await startDevServer({ headless: true, logFile: path.join(stateDir, 'temporal.log'), ...options });
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
      const handle = await startInProcessWorkers(context, { workflowBundle: await workflowBundle(), batchPollMs: 50 });
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
