/**
 * The gpu-node worker: one process per node. It owns the node's engines (one rollout engine per
 * rank on the node, the node's part of the trainer if it hosts train GPUs) and serves one task
 * queue per rank plus the node's trainer queue, so an activity always lands on the process that
 * holds the GPUs it acts on.
 */
import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createGpuNodeActivities, memberRetryDelays } from '../activities/gpuNode';
import { SimClock } from '../engines/simulated/clock';
import { SimEnvironment } from '../engines/simulated/environment';
import { FaultPlan, faultyRolloutEngine, faultyTrainer } from '../engines/simulated/faults';
import { FaultInjector, injectableRolloutEngine, injectableTrainer } from '../engines/simulated/injection';
import { SimGpuMemory } from '../engines/simulated/gpuMemory';
import { SimRolloutEngine } from '../engines/simulated/rolloutEngine';
import { simulatedKvCapacityTokens } from '../engines/simulated/roofline';
import { SimTrainer } from '../engines/simulated/trainer';
import { WorkloadModel } from '../engines/simulated/workload';
import { DigitsEnvironment } from '../engines/digits';
import { createOpenEnvEnvironment } from '../engines/openenv';
import { engineAuthHeaders, headerSecrets } from '../engines/auth';
import { HttpTrainer, SglangRolloutEngine, VllmRolloutEngine } from '../engines/http';
import type { AgentEnvironment, RolloutEngine, Trainer } from '../engines/types';
import { deviceAddress, ranksOnNode } from '../gpu/layout';
import { checkIntRange } from '../validation/patterns';
import { PLAINTEXT, workerDataConverter } from '../temporal/security';
import { createAllOrNone } from './lifecycle';
import { nodeTaskQueues } from './taskQueues';
import { refuseUndecodableArguments } from './undecodable';
import { engineStateDir, faultInjectionDir, modelWeightsPath, storeCache, weightsDir, weightsPath } from './runtime';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_THROTTLE, RANK_QUEUE_POLLERS, SHUTDOWN_FORCE, SHUTDOWN_GRACE, type WorkerContext } from './options';

export interface NodeEngines {
  engines: Map<number, RolloutEngine>;
  trainer: Trainer | undefined;
  environment: AgentEnvironment;
  timeScale: number;
  /** Real engines: cap on new tokens per agent turn. */
  maxNewTokensPerTurn?: number;
}

/** The engines a node's worker drives: simulated, or HTTP adapters to real engines. */
export function createNodeEngines(context: WorkerContext, node: number): NodeEngines {
  return context.parsed.config.engine.rollout.kind === 'simulated' ? createSimulatedNodeEngines(context, node) : createRealNodeEngines(context, node);
}

/** The API key from the environment variable the config names (src/engines/auth.ts); unset is an error, not "no auth". */
function apiKey(variable: string | undefined, what: string): { apiKey?: string } {
  const [key] = headerSecrets(engineAuthHeaders(variable, what));
  return key === undefined ? {} : { apiKey: key };
}

/** HTTP adapters to this node's real rollout engines (one endpoint per rank) and trainer. */
/** The rollout endpoints a node's environment tokenizes with: its own ranks' engines first, then every other. */
export function tokenizerEndpoints(endpoints: readonly string[], ranksOnThisNode: readonly number[]): string[] {
  const own = ranksOnThisNode.map((rank) => endpoints[rank]).filter((url): url is string => url !== undefined);
  return [...new Set([...own, ...endpoints])];
}

export function createRealNodeEngines(context: WorkerContext, node: number): NodeEngines {
  const { config, layout } = context.parsed;
  const { rollout, trainer: trainerConfig, environment } = config.engine;
  if (rollout.kind === 'simulated' || trainerConfig.kind !== 'http' || environment.kind === 'simulated') {
    throw new Error(`gpu-node ${node}: real engines need rollout sglang|vllm, trainer http and environment digits|openenv (the config loader checks this)`);
  }
  const { temperature, stopTokenIds, ignoreEos } = rollout.sampling;
  const sampling = { temperature, stopTokenIds, ignoreEos };
  const key = apiKey(rollout.apiKeyEnv, 'engine.rollout');
  const engines = new Map<number, RolloutEngine>();
  for (const rank of ranksOnNode(layout, node)) {
    const baseUrl = rollout.endpoints[rank.id];
    if (baseUrl === undefined) throw new Error(`gpu-node ${node}: no endpoint for rollout rank ${rank.id} (engine.rollout.endpoints has ${rollout.endpoints.length})`);
    engines.set(
      rank.id,
      rollout.kind === 'sglang'
        ? new SglangRolloutEngine({ baseUrl, sampling, ...key })
        : new VllmRolloutEngine({ baseUrl, sampling, model: rollout.model ?? '', ...key }),
    );
  }
  const hostsTrainer = layout.trainGpus.some((gpu) => deviceAddress(layout, gpu).node === node);
  const trainer = hostsTrainer ? new HttpTrainer({ baseUrl: trainerConfig.endpoint, ...apiKey(trainerConfig.apiKeyEnv, 'engine.trainer') }) : undefined;
  return {
    engines,
    trainer,
    // An OpenEnv environment tokenizes with this node's engines first, then the others' (every rank serves the same model).
    environment:
      environment.kind === 'digits'
        ? new DigitsEnvironment(environment)
        : createOpenEnvEnvironment(environment, rollout, tokenizerEndpoints(rollout.endpoints, ranksOnNode(layout, node).map((rank) => rank.id)), { superviseOnNode: node, log: (line) => console.warn(`gpu-node ${node}: ${line}`) }),
    timeScale: 1,
    ...(rollout.sampling.maxNewTokensPerTurn === undefined ? {} : { maxNewTokensPerTurn: rollout.sampling.maxNewTokensPerTurn }),
  };
}

/** The simulated engines of one node, with one GPU-memory ledger shared by all of them. */
export function createSimulatedNodeEngines(context: WorkerContext, node: number): NodeEngines {
  const { config, layout } = context.parsed;
  const rollout = config.engine.rollout;
  const trainerEngine = config.engine.trainer;
  if (rollout.kind !== 'simulated' || trainerEngine.kind !== 'simulated') {
    throw new Error(`simulated engines asked for a config with engine kinds rollout=${rollout.kind} trainer=${trainerEngine.kind}; use createNodeEngines`);
  }
  const { costModel, workload: workloadParams, timeScale } = config.simulation;
  const clock = new SimClock({ timeScale });
  const workload = WorkloadModel.fromParams(workloadParams, { maxTurns: config.maxTurns, maxTokens: config.maxTokens });
  const nodeGpus = Array.from({ length: layout.gpusPerNode }, (_, i) => node * layout.gpusPerNode + i);
  const memory = new SimGpuMemory({ capacityGiB: costModel.gpuMemoryGiB, gpus: nodeGpus });
  const stateDir = engineStateDir(context.paths, context.runId);

  const faults = new FaultPlan(config.simulation.faults);
  const injector = config.simulation.faultInjection ? new FaultInjector(faultInjectionDir(context.paths, context.runId)) : undefined;
  const engines = new Map<number, RolloutEngine>();
  for (const rank of ranksOnNode(layout, node)) {
    const kvCapacityTokens = simulatedKvCapacityTokens(costModel, config.simulation.hardware, rank.gpus.length);
    const engine = new SimRolloutEngine({
      rank: rank.id,
      gpus: rank.gpus,
      cost: costModel,
      workload,
      clock,
      memory,
      statePath: path.join(stateDir, `rank-${rank.id}.json`),
      ...(kvCapacityTokens === undefined ? {} : { kvCapacityTokens }),
    });
    const declared = config.simulation.faults.length === 0 ? engine : faultyRolloutEngine(engine, faults, rank.id);
    engines.set(rank.id, injector === undefined ? declared : injectableRolloutEngine(declared, injector, rank.id, () => engine.restart()));
  }
  const localTrainGpus = layout.trainGpus.filter((gpu) => deviceAddress(layout, gpu).node === node);
  const simTrainer =
    localTrainGpus.length === 0
      ? undefined
      : new SimTrainer({
          node,
          gpus: localTrainGpus,
          totalTrainGpus: layout.trainGpus.length,
          cost: costModel,
          clock,
          memory,
          statePath: path.join(stateDir, `trainer-node-${node}.json`),
          gpusPerRank: config.rollout.gpusPerRank,
        });
  const declaredTrainer = simTrainer === undefined || config.simulation.faults.length === 0 ? simTrainer : faultyTrainer(simTrainer, faults, node);
  const trainer = declaredTrainer === undefined || injector === undefined ? declaredTrainer : injectableTrainer(declaredTrainer, injector, node);
  return { engines, trainer, environment: new SimEnvironment({ workload, clock }), timeScale };
}

export { nodeTaskQueues };

export async function createGpuNodeWorkers(
  connection: NativeConnection,
  context: WorkerContext,
  node: number,
  engines: NodeEngines = createNodeEngines(context, node),
): Promise<Worker[]> {
  const { config, layout } = context.parsed;
  checkIntRange('gpu-node --node', node, 0, layout.nodes - 1);
  const queues = nodeTaskQueues(layout, config.temporal.taskQueuePrefix, node);
  if (queues.length === 0) {
    throw new Error(`node ${node} hosts no rollout rank and no train GPU in this layout: there is nothing for its worker to serve`);
  }
  const activities = createGpuNodeActivities({
    node,
    runId: context.runId,
    engines: engines.engines,
    trainer: engines.trainer,
    environment: engines.environment,
    store: storeCache(context.paths),
    weightsDir: (runId) => weightsDir(context.paths, runId),
    // Real engines load a model directory (<weights>/v<N>/model.safetensors); the simulation a JSON file.
    weightsPath: (runId, version) =>
      config.engine.trainer.kind === 'simulated' ? weightsPath(context.paths, runId, version) : modelWeightsPath(context.paths, runId, version),
    timeScale: engines.timeScale,
    ...(engines.maxNewTokensPerTurn === undefined ? {} : { maxNewTokensPerTurn: engines.maxNewTokensPerTurn }),
    heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    exportOnTrainStep: config.engine.weightSync.mode === 'disk',
    // A group member whose engine failed waits as the run's retry of the whole group would.
    memberRetryDelaysMs: memberRetryDelays(config.temporal.activityRetry.initialIntervalSeconds * 1000),
    now: () => Date.now(),
  });
  return createAllOrNone(
    queues.map((taskQueue) =>
      Worker.create({
        connection,
        namespace: context.temporal.namespace,
        taskQueue,
        activities,
        dataConverter: workerDataConverter(context.temporal.security ?? PLAINTEXT),
        interceptors: { activity: [refuseUndecodableArguments] },
        // (The SDK 1.24 ignores maxConcurrentActivityTaskPolls; the poller behaviour is what counts.)
        activityTaskPollerBehavior: { type: 'simple-maximum', maximum: RANK_QUEUE_POLLERS },
        defaultHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
        maxHeartbeatThrottleInterval: '1 second',
        shutdownGraceTime: SHUTDOWN_GRACE,
        shutdownForceTime: SHUTDOWN_FORCE,
      }),
    ),
  );
}
