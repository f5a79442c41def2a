/**
 * The gpu-node worker: one process per node. It owns the node's engines (one rollout engine per
 * rank on the node, the node's part of the trainer if it hosts train GPUs) and serves one task
 * queue per rank plus the node's trainer queue, so an activity always lands on the process that
 * holds the GPUs it acts on.
 */
import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createGpuNodeActivities } from '../activities/gpuNode';
import { SimClock } from '../engines/sim/clock';
import { SimEnvironment } from '../engines/sim/environment';
import { FaultPlan, faultyRolloutEngine, faultyTrainer } from '../engines/sim/faults';
import { SimGpuMemory } from '../engines/sim/gpuMemory';
import { SimRolloutEngine } from '../engines/sim/rolloutEngine';
import { SimTrainer } from '../engines/sim/trainer';
import { WorkloadModel } from '../engines/sim/workload';
import type { AgentEnvironment, RolloutEngine, Trainer } from '../engines/types';
import { deviceAddress, ranksOnNode, trainNodes, type PoolLayout } from '../gpu/layout';
import { checkIntRange } from '../gpu/validation';
import { rankQueue, trainerQueue } from '../pipeline/naming';
import { engineStateDir, storeCache, weightsDir, weightsPath } from './runtime';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_THROTTLE, RANK_QUEUE_POLLERS, SHUTDOWN_GRACE, type WorkerContext } from './options';

export interface NodeEngines {
  engines: Map<number, RolloutEngine>;
  trainer: Trainer | undefined;
  environment: AgentEnvironment;
  timeScale: number;
}

/** The simulated engines of one node, with one GPU-memory ledger shared by all of them. */
export function createSimulatedNodeEngines(context: WorkerContext, node: number): NodeEngines {
  const { config, layout } = context.parsed;
  const rollout = config.engine.rollout;
  const trainerEngine = config.engine.trainer;
  if (rollout.kind !== 'simulated' || trainerEngine.kind !== 'simulated') {
    throw new Error(
      `engine kinds rollout=${rollout.kind} trainer=${trainerEngine.kind} have no adapter in this version; only 'simulated' engines are available`,
    );
  }
  const { costModel, workload: workloadParams, timeScale } = config.simulation;
  const clock = new SimClock({ timeScale });
  const workload = WorkloadModel.fromParams(workloadParams, { maxTurns: config.maxTurns, maxTokens: config.maxTokens });
  const nodeGpus = Array.from({ length: layout.gpusPerNode }, (_, i) => node * layout.gpusPerNode + i);
  const memory = new SimGpuMemory({ capacityGiB: costModel.gpuMemoryGiB, gpus: nodeGpus });
  const stateDir = engineStateDir(context.paths, context.runId);

  const faults = new FaultPlan(config.simulation.faults);
  const engines = new Map<number, RolloutEngine>();
  for (const rank of ranksOnNode(layout, node)) {
    const engine = new SimRolloutEngine({
      rank: rank.id,
      gpus: rank.gpus,
      cost: costModel,
      workload,
      clock,
      memory,
      statePath: path.join(stateDir, `rank-${rank.id}.json`),
    });
    engines.set(rank.id, config.simulation.faults.length === 0 ? engine : faultyRolloutEngine(engine, faults, rank.id));
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
        });
  const trainer = simTrainer === undefined || config.simulation.faults.length === 0 ? simTrainer : faultyTrainer(simTrainer, faults, node);
  return { engines, trainer, environment: new SimEnvironment({ workload, clock }), timeScale };
}

/** The task queues a node's worker serves. */
export function nodeTaskQueues(layout: PoolLayout, prefix: string, node: number): string[] {
  const queues = ranksOnNode(layout, node).map((rank) => rankQueue(prefix, rank.id));
  if (trainNodes(layout).includes(node)) queues.push(trainerQueue(prefix, node));
  return queues;
}

export async function createGpuNodeWorkers(
  connection: NativeConnection,
  context: WorkerContext,
  node: number,
  engines: NodeEngines = createSimulatedNodeEngines(context, node),
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
    weightsPath: (runId, version) => weightsPath(context.paths, runId, version),
    timeScale: engines.timeScale,
    heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    now: () => Date.now(),
  });
  return Promise.all(
    queues.map((taskQueue) =>
      Worker.create({
        connection,
        namespace: context.temporal.namespace,
        taskQueue,
        activities,
        // (The SDK 1.24 ignores maxConcurrentActivityTaskPolls; the poller behaviour is what counts.)
        activityTaskPollerBehavior: { type: 'simple-maximum', maximum: RANK_QUEUE_POLLERS },
        defaultHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
        maxHeartbeatThrottleInterval: '1 second',
        shutdownGraceTime: SHUTDOWN_GRACE,
      }),
    ),
  );
}
