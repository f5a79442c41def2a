/**
 * A simulation from a validated run configuration: the same fields the workflows get (through
 * buildRunSpec) plus the simulated engines' cost model and workload.
 */
import type { ParsedRunConfig } from '../config';
import { assumedRateRankModel, derivedCostModel, minimumTrainGpus, rooflineRankModel, simulatedKvCapacityTokens, type RankModel } from '../engines/simulated/roofline';
import { WorkloadModel } from '../engines/simulated/workload';
import type { CostModel } from '../engines/types';
import { checkIntRange, PIPELINE_POLICY, rankKvCapacity, type SchedulingPolicy, type StalenessPolicy } from '../gpu';
import { buildRunSpec } from '../contract/spec';
import type { ControlPlaneLatency, SimulationConfig } from './simulator';

/**
 * The control plane's latency in real time, as measured on one machine: an activity round trip
 * through the dev server takes some 25 ms, and a running shard stops one round trip after the
 * workflow asks (the direct stop activity of docs/design.md §5.2; cancellation is only its fallback).
 */
export const DEFAULT_CONTROL_PLANE_REAL_MS: ControlPlaneLatency = { activityRoundTripMs: 25, shardStopMs: 25 };

export interface SimulationOptions {
  label?: string;
  /** Overrides run.iterations. */
  iterations?: number;
  policy?: SchedulingPolicy;
  /** Overrides rollout.staleness.policy. */
  staleness?: StalenessPolicy;
  timelineIterations?: number;
  /** Directory a relative workload csvPath resolves against (the config file's directory). */
  baseDir?: string;
  /** A ready workload (e.g. with in-memory turn counts); default: built from the config. */
  workload?: WorkloadModel;
  /** Control-plane latency in real ms (default DEFAULT_CONTROL_PLANE_REAL_MS). */
  controlPlaneRealMs?: ControlPlaneLatency;
  /**
   * 'deployment' (default): engines run in real time, so real latencies count as they are.
   * 'config': the run's simulation.timeScale, as the simulated engines of a pipeline run use it:
   * real latencies are worth 1/timeScale simulated ms (what a pipeline run with simulated engines
   * shows; used to validate the simulator against one).
   */
  timeBase?: 'deployment' | 'config';
  /** The admission's KV cap: 'known' (default) where the capacity is known (the config's or the rank model's), 'off': none. */
  kvCap?: 'known' | 'off';
}

export function simulationConfig(parsed: ParsedRunConfig, options: SimulationOptions = {}): SimulationConfig {
  const spec = buildRunSpec(parsed, parsed.config.run.id ?? 'simulation');
  const { config, layout } = parsed;
  const iterations = checkIntRange('simulation iterations', options.iterations ?? spec.iterations, 1, 1_000_000);
  const workload =
    options.workload ??
    WorkloadModel.fromParams(config.simulation.workload, { maxTurns: spec.maxTurns, maxTokens: spec.maxTokens }, { baseDir: options.baseDir });
  const costs = rankCosts(parsed);
  const gpusPerRank = layout.ranks[0]?.gpus.length ?? 1;
  const reported = simulatedKvCapacityTokens(config.simulation.costModel, config.simulation.hardware, gpusPerRank);
  // As the pipeline derives it: the engines' report (the rank model's), at most the config's.
  const kvCapacity = options.kvCap === 'off' ? undefined : rankKvCapacity(reported, spec.kvCapacityTokensPerRank);
  return {
    label: options.label ?? `${layout.strategy} (${layout.nodes * layout.gpusPerNode} GPUs)`,
    layout,
    iterations,
    batchSize: spec.batchSize,
    asyncRatio: spec.asyncRatio,
    maxConcurrentSamples: spec.maxConcurrentSamples,
    maxTurns: spec.maxTurns,
    maxTokens: spec.maxTokens,
    environmentTimeoutMs: spec.environmentTimeoutMs,
    ...costs,
    ...(kvCapacity === undefined ? {} : { kvCapacityTokensPerRank: kvCapacity }),
    workload,
    policy: options.policy ?? PIPELINE_POLICY,
    staleness: { ...spec.staleness!, ...(options.staleness === undefined ? {} : { policy: options.staleness }) },
    controlPlane: scaleLatency(options.controlPlaneRealMs ?? DEFAULT_CONTROL_PLANE_REAL_MS, options.timeBase === 'config' ? config.simulation.timeScale : 1),
    timelineIterations: checkIntRange('timeline iterations', options.timelineIterations ?? 0, 0, iterations),
    ...(spec.weightSync === undefined ? {} : { weightSync: spec.weightSync }),
  };
}

function scaleLatency(real: ControlPlaneLatency, timeScale: number): ControlPlaneLatency {
  return { activityRoundTripMs: real.activityRoundTripMs / timeScale, shardStopMs: real.shardStopMs / timeScale };
}

/**
 * The cost model and rank model of a config: derived from `simulation.hardware` when the config
 * describes the model and GPUs (the capacity-aware roofline), else the cost model's assumed rates
 * (what the pipeline's simulated engines run).
 */
export function rankCosts(parsed: ParsedRunConfig): { cost: CostModel; rankModel: RankModel } {
  const { config, layout } = parsed;
  const hardware = config.simulation.hardware;
  if (hardware === undefined) return { cost: config.simulation.costModel, rankModel: assumedRateRankModel(config.simulation.costModel) };
  const gpusPerRank = layout.ranks[0]?.gpus.length ?? 1;
  const trainGpus = layout.trainGpus.length;
  const minimum = minimumTrainGpus(hardware, config.maxTokens);
  if (trainGpus < minimum) {
    throw new Error(
      `train group of ${trainGpus} GPUs cannot hold ${hardware.model.name} for training at ${config.maxTokens} tokens: ` +
        `it needs at least ${minimum} ${hardware.gpu.name} GPUs (parameters, gradients, optimizer state and activations)`,
    );
  }
  return { cost: derivedCostModel(config.simulation.costModel, hardware, gpusPerRank, trainGpus), rankModel: rooflineRankModel(hardware, gpusPerRank) };
}
