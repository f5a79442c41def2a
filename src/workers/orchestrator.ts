/**
 * The orchestrator worker: runs the workflows and the store bookkeeping activities on the
 * orchestrator task queue. One per run (or a few, for availability); needs no GPU.
 */
import { NativeConnection, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { createOrchestratorActivities } from '../activities/orchestrator';
import { DigitsEnvironment } from '../engines/digits';
import { WorkloadModel } from '../engines/sim/workload';
import { orchestratorQueue } from '../pipeline/naming';
import { PLAINTEXT, workerDataConverter } from '../temporal/security';
import { refuseUndecodableArguments } from './undecodable';
import { moduleFile } from '../sourceFiles';
import { storeCache } from './runtime';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_THROTTLE, SHUTDOWN_GRACE, type WorkerContext } from './options';

export const WORKFLOWS_PATH = moduleFile(__dirname, '..', 'workflows', 'index');

export interface OrchestratorWorkerOptions {
  /** A pre-built workflow bundle (tests build it once); default: bundle src/workflows. */
  workflowBundle?: WorkflowBundleOption;
  batchPollMs?: number;
}

export async function createOrchestratorWorker(
  connection: NativeConnection,
  context: WorkerContext,
  options: OrchestratorWorkerOptions = {},
): Promise<Worker> {
  const { config } = context.parsed;
  const workload = new WorkloadModel(config.simulation.workload, { maxTurns: config.maxTurns, maxTokens: config.maxTokens });
  const environment = config.engine.environment;
  const digits = environment.kind === 'digits' ? new DigitsEnvironment(environment) : undefined;
  const activities = createOrchestratorActivities({
    store: storeCache(context.paths),
    promptTokens: (sampleId) => workload.promptTokens(sampleId),
    ...(digits === undefined ? {} : { promptIds: (sampleId: number) => digits.promptIds(sampleId) }),
    batchPollMs: options.batchPollMs ?? 100,
    heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    now: () => Date.now(),
  });
  return Worker.create({
    connection,
    namespace: context.temporal.namespace,
    taskQueue: orchestratorQueue(config.temporal.taskQueuePrefix),
    ...(options.workflowBundle === undefined ? { workflowsPath: WORKFLOWS_PATH } : { workflowBundle: options.workflowBundle }),
    activities,
    dataConverter: workerDataConverter(context.temporal.security ?? PLAINTEXT),
    interceptors: { activity: [refuseUndecodableArguments] },
    defaultHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    maxHeartbeatThrottleInterval: '1 second',
    shutdownGraceTime: SHUTDOWN_GRACE,
  });
}
