/**
 * The run configuration the control-plane benchmark uses: a multiplexed pool of `ranks` one-GPU
 * ranks (half of them released to train), engines whose every duration is near zero, so what
 * remains of an iteration's time is the control plane (Temporal, workers, the store).
 */
import { checkIntRange, checkPostcondition } from '../validation/patterns';

export interface BenchPoint {
  ranks: number;
  batch: number;
  iterations: number;
  /** GPUs (= one-GPU ranks) per node: one gpu-node worker serves each node. */
  gpusPerNode: number;
  /** Real seconds per simulated second; default BENCH_TIME_SCALE. */
  timeScale?: number;
}

/** Real seconds per simulated second: a simulated turn of a few seconds takes well under 1 ms. */
export const BENCH_TIME_SCALE = 1e-4;

export function benchConfig(point: BenchPoint, runId: string, storeDir: string, address: string): Record<string, unknown> {
  checkIntRange('bench ranks', point.ranks, 2, 4096);
  checkIntRange('bench batch', point.batch, 1, 65_536);
  checkIntRange('bench iterations', point.iterations, 1, 100_000);
  checkIntRange('bench gpusPerNode', point.gpusPerNode, 1, 64);
  const gpusPerNode = Math.min(point.gpusPerNode, point.ranks);
  checkPostcondition('bench: ranks fill whole nodes and an even number of them', point.ranks % gpusPerNode === 0 && point.ranks % 2 === 0, () =>
    JSON.stringify(point),
  );
  return {
    run: { id: runId, iterations: point.iterations },
    pool: { nodes: point.ranks / gpusPerNode, gpusPerNode },
    strategy: 'multiplexed',
    rollout: { gpus: 'all', gpusPerRank: 1 },
    train: { gpus: `0-${point.ranks / 2 - 1}` },
    batchSize: point.batch,
    asyncRatio: 1,
    maxTurns: 4,
    maxTokens: 65_536,
    // Simulated time runs 10⁴× faster than real time: keep the environment timeout out of reach.
    environmentTimeoutSeconds: 1e9,
    simulation: {
      timeScale: point.timeScale ?? BENCH_TIME_SCALE,
      // Transitions cost no engine time: what a transition takes is the control plane's.
      costModel: {
        offloadMs: 0,
        onloadMs: 0,
        weightSyncMs: 0,
        trainerOnloadMs: 0,
        trainerOffloadMs: 0,
        trainStepFixedMs: 0,
        trainTokensPerSecondPerGpu: 1e12,
      },
      workload: {
        turns: { median: 2, p90: 4 },
        completionTokensPerTurn: { median: 100, p90: 400 },
        observationTokensPerTurn: { median: 100, p90: 400 },
        envStepMs: { median: 100, p90: 400 },
      },
    },
    temporal: { address, taskQueuePrefix: runId },
    store: { dir: storeDir },
  };
}
