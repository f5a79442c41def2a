/**
 * The static shape of a GPU pool: nodes, GPUs, rollout ranks, the train group and the strategy.
 * Built once from the run configuration and validated here, so every later step can rely on it.
 * Pure and deterministic: shared by workflows, activities and the simulator.
 */
import { checkIntRange, checkNoDuplicates, checkNonEmpty, checkPostcondition, checkSubset, ValidationError } from '../validation/patterns';

export type GpuId = number;
export type RankId = number;
export type NodeId = number;
export const STRATEGIES = ['colocated', 'disaggregated', 'multiplexed'] as const;
export type Strategy = (typeof STRATEGIES)[number];

export interface DeviceAddress {
  node: NodeId;
  /** CUDA device index on that node. */
  localIndex: number;
}

export interface RankSpec {
  id: RankId;
  node: NodeId;
  /** Global GPU ids, ascending; all on `node`. */
  gpus: GpuId[];
}

export interface PoolLayout {
  strategy: Strategy;
  nodes: number;
  gpusPerNode: number;
  /** Rollout ranks, ids 0..n-1 in ascending GPU order. */
  ranks: RankSpec[];
  /** GPUs the trainer uses, ascending. */
  trainGpus: GpuId[];
  /**
   * Ranks released for training at shrink: every rank with a GPU in the train group (a rank
   * cannot keep serving on part of its GPUs). colocated: all; disaggregated: none.
   */
  shrinkRanks: RankId[];
}

export interface LayoutInput {
  strategy: Strategy;
  nodes: number;
  gpusPerNode: number;
  /** GPUs serving rollout; ranks are cut from them in order, `gpusPerRank` at a time. */
  rolloutGpus: GpuId[];
  gpusPerRank: number;
  trainGpus: GpuId[];
  asyncRatio: number;
}

export const MAX_GPUS = 65_536;

export function totalGpus(layout: Pick<PoolLayout, 'nodes' | 'gpusPerNode'>): number {
  return layout.nodes * layout.gpusPerNode;
}

/** Device mapping: global GPU id → (node, local CUDA index). */
export function deviceAddress(layout: Pick<PoolLayout, 'nodes' | 'gpusPerNode'>, gpu: GpuId): DeviceAddress {
  checkIntRange('gpu id', gpu, 0, totalGpus(layout) - 1);
  return { node: Math.floor(gpu / layout.gpusPerNode), localIndex: gpu % layout.gpusPerNode };
}

/** Ranks whose GPUs sit on `node`. */
export function ranksOnNode(layout: PoolLayout, node: NodeId): RankSpec[] {
  return layout.ranks.filter((rank) => rank.node === node);
}

/** Nodes that host at least one train GPU, ascending. */
export function trainNodes(layout: PoolLayout): NodeId[] {
  return [...new Set(layout.trainGpus.map((gpu) => deviceAddress(layout, gpu).node))].sort((a, b) => a - b);
}

export function rankById(layout: PoolLayout, id: RankId): RankSpec {
  const rank = layout.ranks[id];
  if (rank === undefined || rank.id !== id) {
    throw new ValidationError('VAL_INT_RANGE', 'rank id', String(id), `no such rank (pool has ${layout.ranks.length})`);
  }
  return rank;
}

/**
 * Builds and validates the layout. Strategy rules (docs/design.md §5):
 *  - colocated: train GPUs == rollout GPUs, async ratio 0;
 *  - disaggregated: train and rollout GPUs disjoint;
 *  - multiplexed: train GPUs a strict subset of rollout GPUs, and at least one rank keeps
 *    rolling out while the train group trains.
 */
export function buildLayout(input: LayoutInput): PoolLayout {
  checkIntRange('pool.nodes', input.nodes, 1, MAX_GPUS);
  checkIntRange('pool.gpusPerNode', input.gpusPerNode, 1, 64);
  const gpuCount = input.nodes * input.gpusPerNode;
  checkIntRange('pool size (nodes × gpusPerNode)', gpuCount, 1, MAX_GPUS);
  const allGpus = Array.from({ length: gpuCount }, (_, i) => i);

  checkNonEmpty('rollout.gpus', input.rolloutGpus);
  checkNoDuplicates('rollout.gpus', input.rolloutGpus);
  checkSubset('rollout.gpus', input.rolloutGpus, allGpus, { universeName: `the pool's GPUs 0..${gpuCount - 1}` });
  checkIntRange('rollout.gpusPerRank', input.gpusPerRank, 1, input.gpusPerNode);
  checkNonEmpty('train.gpus', input.trainGpus);
  checkNoDuplicates('train.gpus', input.trainGpus);
  checkSubset('train.gpus', input.trainGpus, allGpus, { universeName: `the pool's GPUs 0..${gpuCount - 1}` });

  const rolloutGpus = [...input.rolloutGpus].sort((a, b) => a - b);
  const trainGpus = [...input.trainGpus].sort((a, b) => a - b);
  if (rolloutGpus.length % input.gpusPerRank !== 0) {
    throw new ValidationError(
      'VAL_INT_RANGE',
      'rollout.gpus',
      String(rolloutGpus.length),
      `the number of rollout GPUs must be a multiple of rollout.gpusPerRank (${input.gpusPerRank})`,
    );
  }

  const ranks: RankSpec[] = [];
  for (let start = 0; start < rolloutGpus.length; start += input.gpusPerRank) {
    const gpus = rolloutGpus.slice(start, start + input.gpusPerRank);
    const nodes = new Set(gpus.map((gpu) => Math.floor(gpu / input.gpusPerNode)));
    if (nodes.size !== 1) {
      throw new ValidationError(
        'VAL_SUBSET',
        `rollout rank ${ranks.length}`,
        JSON.stringify(gpus),
        'a rank must sit on one node; check rollout.gpus and rollout.gpusPerRank',
      );
    }
    ranks.push({ id: ranks.length, node: Math.floor(gpus[0]! / input.gpusPerNode), gpus });
  }

  const trainSet = new Set(trainGpus);
  const shrinkRanks = ranks.filter((rank) => rank.gpus.some((gpu) => trainSet.has(gpu))).map((rank) => rank.id);

  switch (input.strategy) {
    case 'colocated': {
      checkSubset('train.gpus (colocated: must equal rollout.gpus)', trainGpus, rolloutGpus, { universeName: 'rollout.gpus' });
      checkSubset('rollout.gpus (colocated: must equal train.gpus)', rolloutGpus, trainGpus, { universeName: 'train.gpus' });
      checkIntRange('asyncRatio (colocated: rollout waits for training)', input.asyncRatio, 0, 0);
      break;
    }
    case 'disaggregated': {
      const shared = trainGpus.filter((gpu) => rolloutGpus.includes(gpu));
      if (shared.length > 0) {
        throw new ValidationError(
          'VAL_SUBSET',
          'train.gpus (disaggregated: must be disjoint from rollout.gpus)',
          JSON.stringify(shared),
          'these GPUs are in both train.gpus and rollout.gpus',
        );
      }
      break;
    }
    case 'multiplexed': {
      checkSubset('train.gpus (multiplexed: must be a strict subset of rollout.gpus)', trainGpus, rolloutGpus, {
        strict: true,
        universeName: 'rollout.gpus',
      });
      if (shrinkRanks.length >= ranks.length) {
        throw new ValidationError(
          'VAL_SUBSET',
          'train.gpus (multiplexed: at least one rank must keep rolling out)',
          JSON.stringify(trainGpus),
          `every rollout rank has a GPU in the train group (ranks are ${input.gpusPerRank} GPUs wide)`,
        );
      }
      break;
    }
  }

  const layout: PoolLayout = {
    strategy: input.strategy,
    nodes: input.nodes,
    gpusPerNode: input.gpusPerNode,
    ranks,
    trainGpus,
    shrinkRanks,
  };
  checkPostcondition('layout: ranks partition rollout.gpus', ranks.flatMap((r) => r.gpus).length === rolloutGpus.length, () =>
    JSON.stringify(ranks.map((r) => r.gpus)),
  );
  return layout;
}

/** Ranks that keep rolling out while the train group trains. */
export function remainingRanks(layout: PoolLayout): RankId[] {
  const released = new Set(layout.shrinkRanks);
  return layout.ranks.map((rank) => rank.id).filter((id) => !released.has(id));
}
