/**
 * Bench presets: a run configuration file (examples/<preset>.yaml, a multiplexed pool) and the
 * variants the bench derives from it: the three strategies on the same GPUs, other pool sizes,
 * and other workload shapes. Every variant goes through the config schema and layout rules.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { examplesDir, parseRunConfig, type ParsedRunConfig } from '../config';
import { WorkloadModel } from '../engines/simulated/workload';
import { logNormal } from '../engines/simulated/random';
import type { Strategy } from '../gpu';

export const PRESETS = ['seed-160', 'dense-8b-h100'] as const;
export type PresetName = (typeof PRESETS)[number];

type Raw = Record<string, unknown>;

export function presetPath(name: string): string {
  if (!(PRESETS as readonly string[]).includes(name)) {
    throw new Error(`unknown bench preset '${name}' (known: ${PRESETS.join(', ')})`);
  }
  return path.join(examplesDir(), `${name}.yaml`);
}

export function readRawConfig(file: string): Raw {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`cannot read ${file}: ${(error as Error).message}`);
  }
  const raw: unknown = parseYaml(text);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${file}: expected a YAML mapping at the top level`);
  return raw as Raw;
}

function section(raw: Raw, key: string): Raw {
  const value = raw[key];
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Raw) : {};
}

/**
 * The base (a multiplexed config) as `strategy`, on the same pool and train group:
 * disaggregated rolls out on the GPUs outside the train group; colocated trains and rolls out on
 * every GPU with async ratio 0 (its rule).
 */
export function asStrategy(base: Raw, strategy: Strategy, source: string): ParsedRunConfig {
  const parsedBase = parseRunConfig(base, source);
  const poolGpus = parsedBase.layout.nodes * parsedBase.layout.gpusPerNode;
  const trainSet = new Set(parsedBase.layout.trainGpus);
  const raw: Raw = { ...base, strategy };
  if (strategy === 'disaggregated') {
    raw.rollout = { ...section(base, 'rollout'), gpus: Array.from({ length: poolGpus }, (_, gpu) => gpu).filter((gpu) => !trainSet.has(gpu)) };
  } else if (strategy === 'colocated') {
    raw.rollout = { ...section(base, 'rollout'), gpus: 'all' };
    raw.train = { gpus: 'all' };
    raw.asyncRatio = 0;
  }
  return parseRunConfig(raw, `${source} as ${strategy}`);
}

/**
 * The base on `nodes` nodes: the train group keeps its share of the pool (whole nodes from GPU 0)
 * and the batch size its ratio to the pool.
 */
export function resizePool(base: Raw, nodes: number, source: string): Raw {
  const parsed = parseRunConfig(base, source);
  const { layout } = parsed;
  const trainNodes = Math.max(1, Math.round((layout.trainGpus.length / layout.gpusPerNode) * (nodes / layout.nodes)));
  if (trainNodes >= nodes) throw new Error(`resizePool: ${nodes} nodes leave no node outside the train group`);
  const batchSize = Math.max(1, Math.round((parsed.config.batchSize * nodes) / layout.nodes));
  return {
    ...base,
    run: { ...section(base, 'run'), id: `${String(section(base, 'run').id ?? 'bench')}-${nodes * layout.gpusPerNode}` },
    pool: { ...section(base, 'pool'), nodes },
    train: { gpus: `0-${trainNodes * layout.gpusPerNode - 1}` },
    batchSize,
  };
}

/** The base with its train group on the first `trainGpus` GPUs (0 to trainGpus - 1). */
export function withTrainGpus(base: Raw, trainGpus: number): Raw {
  return { ...base, train: { gpus: `0-${trainGpus - 1}` } };
}

export const WORKLOAD_SHAPES = ['swe', 'heavy-tail', 'light-tail', 'bimodal'] as const;
export type WorkloadShape = (typeof WORKLOAD_SHAPES)[number];

export const WORKLOAD_SHAPE_NOTES: Record<WorkloadShape, string> = {
  swe: 'turns log-normal, median 36 / p90 66 (SWE-bench Verified statistics)',
  'heavy-tail': 'turns log-normal, median 20 / p90 80',
  'light-tail': 'turns log-normal, median 36 / p90 44',
  bimodal: 'turns: 60 % around 12 (p90 18), 40 % around 80 (p90 95)',
};

/** Points of a quantile grid: n values of the log-normal at (i + 0.5) / n. */
function quantileGrid(median: number, p90: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.max(1, Math.round(logNormal({ median, p90 }, (i + 0.5) / n))));
}

/** The workload of a parsed config with its turn distribution replaced by `shape`. */
export function shapedWorkload(parsed: ParsedRunConfig, shape: WorkloadShape): WorkloadModel {
  const params = parsed.config.simulation.workload;
  const limits = { maxTurns: parsed.config.maxTurns, maxTokens: parsed.config.maxTokens };
  switch (shape) {
    case 'swe':
      return new WorkloadModel({ ...params, turnDistribution: 'lognormal', turns: { median: 36, p90: 66 } }, limits);
    case 'heavy-tail':
      return new WorkloadModel({ ...params, turnDistribution: 'lognormal', turns: { median: 20, p90: 80 } }, limits);
    case 'light-tail':
      return new WorkloadModel({ ...params, turnDistribution: 'lognormal', turns: { median: 36, p90: 44 } }, limits);
    case 'bimodal': {
      // An empirical distribution, drawn from like a per-trajectory CSV.
      const turns = [...quantileGrid(12, 18, 600), ...quantileGrid(80, 95, 400)];
      return new WorkloadModel({ ...params, turnDistribution: 'csv', csvPath: '(generated: bimodal)' }, limits, turns);
    }
  }
}

