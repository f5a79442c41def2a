/**
 * `timeshare worker orchestrator | gpu-node`: the worker processes. The only commands that load
 * the Temporal worker SDK and its native core (src/cli/main.ts loads this module when they run).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { NativeConnection } from '@temporalio/worker';
import { connectionOptions } from '../temporal/security';
import { createGpuNodeWorkers } from '../workers/gpuNode';
import { runWorkers } from '../workers/lifecycle';
import { installWorkerRuntime } from '../workers/telemetry';
import type { TemporalTarget } from '../workers/options';
import { createOrchestratorWorker } from '../workers/orchestrator';
import { checkBuildId, type SetCurrentPolicy } from '../workers/versioning';
import { workerContext, type ConnectionFlags } from './context';
import { CliError } from './errors';
import { EXIT } from './exitCodes';

export type WorkerFlags = ConnectionFlags & { stateDir: string; exitWithParent?: boolean; serverWait: number; metricsAddress?: string };
export type OrchestratorFlags = WorkerFlags & { buildId?: string; workflowBundle?: string; setCurrent?: boolean; neverCurrent?: boolean };

function buildIdFlag(text: string): string {
  try {
    return checkBuildId(text, '--build-id');
  } catch (error) {
    throw new CliError(error instanceof Error ? error.message : String(error), 2);
  }
}

/** How often a worker told to wait for its server tries again. */
const SERVER_RETRY_MS = 200;

/**
 * Connects to the server and its namespace. With `serverWaitMs` > 0 a server that does not answer
 * yet is waited for (`dev` starts its workers while its own server starts); then, or at once
 * without it, the error says what to do.
 */
async function connectWorker(temporal: TemporalTarget, flags: WorkerFlags): Promise<NativeConnection> {
  installRuntime(flags.metricsAddress);
  const serverWaitMs = flags.serverWait * 1000;
  const deadline = Date.now() + serverWaitMs;
  for (;;) {
    try {
      return await connectToNamespace(temporal);
    } catch (error) {
      if (Date.now() >= deadline) {
        throw new CliError(
          `cannot reach the Temporal server at ${temporal.address} (${temporal.security?.summary ?? 'plaintext'})${serverWaitMs > 0 ? ` within --server-wait ${serverWaitMs / 1000} s` : ''}: ` +
            `${error instanceof Error ? error.message : String(error)}\n  Start one ('timeshare dev' or a cluster) or pass --address host:port.`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, SERVER_RETRY_MS));
    }
  }
}

/** The process's Temporal runtime, with its Prometheus endpoint where --metrics-address asks for one. */
function installRuntime(metricsAddress: string | undefined): void {
  if (metricsAddress === undefined) return installWorkerRuntime();
  try {
    installWorkerRuntime({ metricsAddress });
  } catch (error) {
    throw new CliError(`--metrics-address ${metricsAddress}: cannot serve metrics there: ${error instanceof Error ? error.message : String(error)}`, EXIT.usage);
  }
  console.error(`metrics (Prometheus): http://${metricsAddress}/metrics`);
}

/** A connection once the namespace answers (a dev server registers `default` just after its front end is up). */
async function connectToNamespace(temporal: TemporalTarget): Promise<NativeConnection> {
  const connection = await NativeConnection.connect({ address: temporal.address, ...(temporal.security === undefined ? {} : connectionOptions(temporal.security)) });
  try {
    await connection.workflowService.describeNamespace({ namespace: temporal.namespace });
    return connection;
  } catch (error) {
    await connection.close();
    throw error;
  }
}

function setCurrentPolicy(flags: OrchestratorFlags): SetCurrentPolicy {
  if (flags.setCurrent === true && flags.neverCurrent === true) throw new CliError('--set-current and --never-current contradict each other: give one', 2);
  return flags.setCurrent === true ? 'always' : flags.neverCurrent === true ? 'never' : 'if-none';
}

export async function runOrchestratorWorker(configPath: string, flags: OrchestratorFlags): Promise<void> {
  const context = workerContext(configPath, flags);
  const buildId = flags.buildId === undefined ? undefined : buildIdFlag(flags.buildId);
  const bundleFile = flags.workflowBundle === undefined ? undefined : path.resolve(flags.workflowBundle);
  if (bundleFile !== undefined && !existsSync(bundleFile)) throw new CliError(`--workflow-bundle: no file ${bundleFile}`, 2);
  const connection = await connectWorker(context.temporal, flags);
  const orchestrator = await createOrchestratorWorker(connection, context, {
    ...(buildId === undefined ? {} : { buildId }),
    ...(bundleFile === undefined ? {} : { workflowBundle: { codePath: bundleFile } }),
    setCurrent: setCurrentPolicy(flags),
    log: (line) => console.error(line),
  });
  console.error(`orchestrator worker for run '${context.runId}' on ${context.temporal.address} (${context.temporal.security?.summary ?? 'plaintext'})`);
  await runWorkers([orchestrator], connection, { exitWithParent: flags.exitWithParent });
}

export async function runGpuNodeWorker(configPath: string, flags: WorkerFlags & { node: number }): Promise<void> {
  const context = workerContext(configPath, flags);
  const connection = await connectWorker(context.temporal, flags);
  const workers = await createGpuNodeWorkers(connection, context, flags.node);
  console.error(
    `gpu-node ${flags.node} worker for run '${context.runId}' on ${context.temporal.address} (${context.temporal.security?.summary ?? 'plaintext'}): ${workers.map((w) => w.options.taskQueue).join(', ')}`,
  );
  await runWorkers(workers, connection, { exitWithParent: flags.exitWithParent });
}
