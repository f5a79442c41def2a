/**
 * The simulated cost model as pure functions: one definition of every duration, used by the
 * simulated engines (real-time timers, scaled) and by the discrete-event simulator (src/simulator,
 * virtual time), so the two cannot drift apart.
 */
import type { CostModel, MemoryTag } from '../types';

export type DecodeCost = Pick<CostModel, 'decodeTokensPerSecondPerRank' | 'decodeHalfSaturationConcurrency'>;

/**
 * Per-request decode rate (tokens per simulated ms) on a rank running `running` requests:
 * the rank's aggregate T(c) = peak · c / (c + halfSaturation), shared equally.
 */
export function decodeTokensPerMsPerRequest(cost: DecodeCost, running: number): number {
  return cost.decodeTokensPerSecondPerRank / (running + cost.decodeHalfSaturationConcurrency) / 1000;
}

/** Simulated prefill time of `uncachedTokens` context tokens (those not in the rank's prefix cache). */
export function prefillMs(cost: Pick<CostModel, 'prefillMsPerThousandTokens'>, uncachedTokens: number): number {
  return (uncachedTokens / 1000) * cost.prefillMsPerThousandTokens;
}

/** Simulated duration of one optimizer step over `totalTokens` on `trainGpus` GPUs. */
export function trainStepMs(cost: Pick<CostModel, 'trainStepFixedMs' | 'trainTokensPerSecondPerGpu'>, totalTokens: number, trainGpus: number): number {
  return cost.trainStepFixedMs + (totalTokens / (cost.trainTokensPerSecondPerGpu * trainGpus)) * 1000;
}

/**
 * The part of a whole release (offloadMs) or resume (onloadMs) spent on one memory tag:
 * proportional to the tag's memory (an equal split if both are 0).
 */
export function memoryTagShareMs(
  cost: Pick<CostModel, 'rolloutWeightsGiBPerGpu' | 'rolloutKvCacheGiBPerGpu'>,
  tag: MemoryTag,
  totalMs: number,
): number {
  const all = cost.rolloutWeightsGiBPerGpu + cost.rolloutKvCacheGiBPerGpu;
  const own = tag === 'weights' ? cost.rolloutWeightsGiBPerGpu : cost.rolloutKvCacheGiBPerGpu;
  return all > 0 ? (totalMs * own) / all : totalMs / 2;
}

/**
 * Simulated duration of one weight broadcast from the trainer to every engine: one rank's weights
 * (GiB per GPU × GPUs per rank) at the collective's bandwidth. A pipelined broadcast (ring or tree,
 * chunked) takes about as long for many receivers as for one, so the number of engines is not in it.
 */
export function weightBroadcastMs(cost: Pick<CostModel, 'rolloutWeightsGiBPerGpu' | 'broadcastGiBPerSecond'>, gpusPerRank: number): number {
  return ((cost.rolloutWeightsGiBPerGpu * gpusPerRank) / cost.broadcastGiBPerSecond) * 1000;
}
