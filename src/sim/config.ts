/**
 * A simulation from a validated run configuration: the same fields the workflows get (through
 * buildRunSpec) plus the simulated engines' cost model and workload.
 */
import type { ParsedRunConfig } from '../config';
import { WorkloadModel } from '../engines/sim/workload';
import { checkIntRange, PIPELINE_POLICY, type SchedulingPolicy } from '../gpu';
import { buildRunSpec } from '../pipeline/spec';
import type { SimulationConfig } from './simulator';

export interface SimulationOptions {
  label?: string;
  /** Overrides run.iterations. */
  iterations?: number;
  policy?: SchedulingPolicy;
  timelineIterations?: number;
  /** Directory a relative workload csvPath resolves against (the config file's directory). */
  baseDir?: string;
  /** A ready workload (e.g. with in-memory turn counts); default: built from the config. */
  workload?: WorkloadModel;
}

export function simulationConfig(parsed: ParsedRunConfig, options: SimulationOptions = {}): SimulationConfig {
  const spec = buildRunSpec(parsed, parsed.config.run.id ?? 'simulation');
  const { config, layout } = parsed;
  const iterations = checkIntRange('simulation iterations', options.iterations ?? spec.iterations, 1, 1_000_000);
  const workload =
    options.workload ??
    WorkloadModel.fromParams(config.simulation.workload, { maxTurns: spec.maxTurns, maxTokens: spec.maxTokens }, { baseDir: options.baseDir });
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
    cost: config.simulation.costModel,
    workload,
    policy: options.policy ?? PIPELINE_POLICY,
    timelineIterations: checkIntRange('timeline iterations', options.timelineIterations ?? 0, 0, iterations),
  };
}
