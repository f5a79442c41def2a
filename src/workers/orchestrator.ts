/**
 * The orchestrator worker: runs the workflows and the store bookkeeping activities on the
 * orchestrator task queue. One per run (or a few, for availability); needs no GPU.
 */
import { NativeConnection, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { createOrchestratorActivities } from '../activities/orchestrator';
import { DigitsEnvironment } from '../engines/digits';
import { createOpenEnvEnvironment } from '../engines/openenv';
import { WorkloadModel } from '../engines/simulated/workload';
import { orchestratorQueue } from '../contract/naming';
import { PLAINTEXT, workerDataConverter } from '../temporal/security';
import { bundleBuildId, cachedWorkflowBundle, WORKFLOW_BUNDLE_INPUTS, type CachedWorkflowBundle } from './bundle';
import { refuseUndecodableArguments } from './undecodable';
import { storeCache } from './runtime';
import { deploymentNameFor, setCurrentVersion, versionedWorkerOptions, type DeploymentVersion, type SetCurrentPolicy } from './versioning';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_THROTTLE, SHUTDOWN_FORCE, SHUTDOWN_GRACE, type WorkerContext } from './options';

export { WORKFLOWS_PATH, WORKFLOW_BUNDLE_INPUTS } from './bundle';

export interface OrchestratorWorkerOptions {
  /** A pre-built workflow bundle; default: the cached bundle of src/workflows (built on a miss). */
  workflowBundle?: WorkflowBundleOption | CachedWorkflowBundle;
  /** Worker Deployment build id; default: the bundle's content hash. */
  buildId?: string;
  /** When this version becomes the deployment's current one (src/workers/versioning.ts); default `if-none`. */
  setCurrent?: SetCurrentPolicy;
  batchPollMs?: number;
  /** Where to say which version this worker runs and whether it became current; default: silent. */
  log?: (line: string) => void;
}

export interface OrchestratorWorker {
  worker: Worker;
  version: DeploymentVersion;
}

export async function createOrchestratorWorker(
  connection: NativeConnection,
  context: WorkerContext,
  options: OrchestratorWorkerOptions = {},
): Promise<Worker> {
  return (await createVersionedOrchestratorWorker(connection, context, options)).worker;
}

/** The orchestrator worker and the Worker Deployment version it runs as (set current per `options.setCurrent`). */
export async function createVersionedOrchestratorWorker(
  connection: NativeConnection,
  context: WorkerContext,
  options: OrchestratorWorkerOptions = {},
): Promise<OrchestratorWorker> {
  const { config } = context.parsed;
  const bundle = options.workflowBundle ?? (await cachedWorkflowBundle(WORKFLOW_BUNDLE_INPUTS));
  const version: DeploymentVersion = {
    deploymentName: deploymentNameFor(config.temporal.taskQueuePrefix),
    buildId: options.buildId ?? bundleBuildId(bundle),
  };
  const workload = new WorkloadModel(config.simulation.workload, { maxTurns: config.maxTurns, maxTokens: config.maxTokens });
  const environment = config.engine.environment;
  // Real environments give each sample's prompt ids at admission (OpenEnv: a stateless reset with the episode's seed).
  const prompter =
    environment.kind === 'digits'
      ? new DigitsEnvironment(environment)
      : environment.kind === 'openenv'
        ? createOpenEnvEnvironment(environment, config.engine.rollout, config.engine.rollout.kind === 'simulated' ? [] : config.engine.rollout.endpoints)
        : undefined;
  const activities = createOrchestratorActivities({
    store: storeCache(context.paths),
    promptTokens: (sampleId) => workload.promptTokens(sampleId),
    ...(prompter === undefined ? {} : { promptIds: (sampleId: number) => prompter.promptIds(sampleId) }),
    batchPollMs: options.batchPollMs ?? 100,
    heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    now: () => Date.now(),
  });
  const worker = await Worker.create({
    connection,
    namespace: context.temporal.namespace,
    taskQueue: orchestratorQueue(config.temporal.taskQueuePrefix),
    workflowBundle: bundleOption(bundle),
    workerDeploymentOptions: versionedWorkerOptions(version),
    activities,
    dataConverter: workerDataConverter(context.temporal.security ?? PLAINTEXT),
    interceptors: { activity: [refuseUndecodableArguments] },
    defaultHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    maxHeartbeatThrottleInterval: '1 second',
    shutdownGraceTime: SHUTDOWN_GRACE,
    shutdownForceTime: SHUTDOWN_FORCE,
  });
  const outcome = await setCurrentVersion(connection, context.temporal.namespace, version, options.setCurrent ?? 'if-none');
  options.log?.(`orchestrator worker version ${version.deploymentName}.${version.buildId}: current version ${outcome}`);
  return { worker, version };
}

/** The SDK's bundle option without our cache bookkeeping fields. */
function bundleOption(bundle: WorkflowBundleOption | CachedWorkflowBundle): WorkflowBundleOption {
  return 'buildId' in bundle ? { codePath: bundle.codePath } : bundle;
}
