/**
 * The capacity-aware rank model from first principles: what a model on a GPU type can hold and
 * how fast it runs, derived from the model's architecture and the hardware's memory, bandwidth and
 * compute (a roofline), not assumed.
 *
 * - KV-cache capacity of a rank: the rank's usable memory minus its share of the weights, over
 *   the KV bytes one token needs (K and V per layer per KV head; heads replicated when the rank's
 *   tensor parallelism exceeds the KV heads).
 * - A decode step: memory-bound (the weights the batch touches, plus every running request's KV,
 *   read once per step) or compute-bound (2 FLOPs per active parameter per token), whichever is
 *   slower, plus a fixed per-step overhead. An MoE batch of b tokens touches each expert with
 *   probability 1 − (1 − k/E)^b, so a large batch reads nearly all the weights.
 * - A prefill: compute-bound, linear in the uncached tokens plus attention over the prefix.
 * - Transfers (offload, onload, weight sync, trainer state): bytes per GPU over a link's bandwidth.
 * - Training: 6 FLOPs per active parameter per token at a model FLOPs utilisation; the smallest
 *   train group is the one whose memory holds parameters, gradients, optimizer state and the
 *   activations of one sequence at the context length.
 *
 * Pure functions; the efficiencies are stated assumptions (docs/simulator.md), the same for every
 * preset, not fitted to the calibration figures.
 */
import { checkIntRange, checkPostcondition } from '../../validation/patterns';
import type { Hardware, ModelArchitecture } from '../hardware';
import type { CostModel } from '../types';

const GIB = 1024 ** 3;
const GB = 1e9;

/** The model's hidden size as the attention width (query heads × head dim). */
function attentionWidth(model: ModelArchitecture): number {
  return model.attentionHeads * model.headDim;
}

/** KV-cache bytes one token needs on a rank of `gpusPerRank` GPUs (replicated KV heads counted). */
export function kvBytesPerToken(model: ModelArchitecture, gpusPerRank: number): number {
  const replication = Math.max(1, gpusPerRank / model.kvHeads);
  return 2 * model.layers * model.kvHeads * model.headDim * model.kvBytes * replication;
}

export function weightBytes(model: ModelArchitecture): number {
  return model.parametersB * 1e9 * model.weightBytes;
}

/** The rank model of one rollout rank: capacity and costs (ms, tokens). */
export interface RankModel {
  /** KV-cache capacity in tokens (Infinity: unlimited). */
  readonly kvCapacityTokens: number;
  /** Prefill is one queue per rank (requests take turns; decode waits while it runs), or a timer per request. */
  readonly sharedPrefill: boolean;
  /** Requests admitted at once (Infinity: no cap). */
  readonly maxRunningRequests: number;
  /** Time of one decode step with `batch` decoding requests holding `contextTokens` of KV in all. */
  decodeStepMs(batch: number, contextTokens: number): number;
  /** Time to prefill `uncached` tokens after a cached prefix of `cached` tokens. */
  prefillMs(uncached: number, cached: number): number;
  /** The rank's peak decode throughput (tokens/s): a full batch with a full KV cache. */
  readonly peakDecodeTokensPerSecond: number;
  /** Peak prefill throughput (tokens/s, no prefix). */
  readonly peakPrefillTokensPerSecond: number;
}

export interface RankCapacity {
  weightsGiBPerGpu: number;
  kvCacheGiBPerGpu: number;
  kvCapacityTokens: number;
}

export function rankCapacity(hw: Hardware, gpusPerRank: number): RankCapacity {
  checkIntRange('GPUs per rank', gpusPerRank, 1, 4096);
  const usable = hw.gpu.memoryGiB * GIB * hw.memoryFraction * gpusPerRank;
  const weights = weightBytes(hw.model);
  const kvBytes = usable - weights;
  if (kvBytes <= 0) {
    throw new Error(
      `${hw.model.name} (${(weights / GIB).toFixed(0)} GiB of weights) does not fit a rank of ${gpusPerRank} × ${hw.gpu.name} ` +
        `(${(usable / GIB).toFixed(0)} GiB usable at memoryFraction ${hw.memoryFraction}): no room for a KV cache`,
    );
  }
  return {
    weightsGiBPerGpu: weights / gpusPerRank / GIB,
    kvCacheGiBPerGpu: kvBytes / gpusPerRank / GIB,
    kvCapacityTokens: Math.floor(kvBytes / kvBytesPerToken(hw.model, gpusPerRank)),
  };
}

/**
 * The KV capacity a simulated rollout engine reports (tokens): the roofline's with `hardware` (the
 * simulator's rank model), else the cost model's declared `kvCapacityTokensPerRank`; undefined when
 * neither says (the assumed-rate model has no KV limit).
 */
export function simulatedKvCapacityTokens(cost: CostModel, hardware: Hardware | undefined, gpusPerRank: number): number | undefined {
  return hardware === undefined ? cost.kvCapacityTokensPerRank : rankCapacity(hardware, gpusPerRank).kvCapacityTokens;
}

/** Parameters a batch of `batch` tokens reads in one step: the dense part plus the experts it touches. */
export function parametersReadPerStep(model: ModelArchitecture, batch: number): number {
  const total = model.parametersB * 1e9;
  const active = model.activeParametersB * 1e9;
  if (model.experts === undefined || batch <= 0) return batch <= 0 ? 0 : active;
  const share = model.experts.perToken / model.experts.count;
  // total = dense + routed; active = dense + routed · share.
  const routed = share < 1 ? (total - active) / (1 - share) : 0;
  const dense = total - routed;
  const touched = 1 - Math.pow(1 - share, batch);
  return dense + routed * touched;
}

export function rooflineRankModel(hw: Hardware, gpusPerRank: number): RankModel {
  const { model, gpu } = hw;
  const capacity = rankCapacity(hw, gpusPerRank);
  const bandwidth = gpu.hbmTBps * 1e12 * hw.hbmEfficiency * gpusPerRank; // bytes/s
  const flops = gpu.tflops * 1e12 * hw.computeEfficiency * gpusPerRank; // FLOP/s
  const kvPerToken = kvBytesPerToken(model, gpusPerRank);
  const active = model.activeParametersB * 1e9;
  const width = attentionWidth(model);
  // Weight bytes a step reads, by batch (the simulator asks at every event).
  const weightBytesByBatch = Float64Array.from({ length: hw.maxRunningRequests + 1 }, (_, batch) => parametersReadPerStep(model, batch) * model.weightBytes);
  const decodeStepMs = (batch: number, contextTokens: number): number => {
    if (batch <= 0) return Infinity;
    const weights = batch < weightBytesByBatch.length ? weightBytesByBatch[batch]! : parametersReadPerStep(model, batch) * model.weightBytes;
    const bytes = weights + contextTokens * kvPerToken;
    const work = 2 * active * batch + 4 * model.layers * width * contextTokens;
    return (Math.max(bytes / bandwidth, work / flops) * 1000) + hw.stepOverheadMs;
  };
  const prefillMs = (uncached: number, cached: number): number => {
    if (uncached <= 0) return 0;
    // Causal attention of the new tokens over the prefix and over each other (QK and AV).
    const attention = 4 * model.layers * width * (uncached * cached + (uncached * uncached) / 2);
    return ((2 * active * uncached + attention) / flops) * 1000;
  };
  const peakBatch = hw.maxRunningRequests;
  const peakDecode = peakBatch / (decodeStepMs(peakBatch, capacity.kvCapacityTokens) / 1000);
  return {
    kvCapacityTokens: capacity.kvCapacityTokens,
    sharedPrefill: true,
    maxRunningRequests: hw.maxRunningRequests,
    decodeStepMs,
    prefillMs,
    peakDecodeTokensPerSecond: peakDecode,
    peakPrefillTokensPerSecond: flops / (2 * active),
  };
}

/**
 * The assumed-rate model of the cost model's own fields: T(c) = peak · c / (c + halfSaturation),
 * prefill a per-request timer, no KV limit. What the pipeline's simulated engines run.
 */
export function assumedRateRankModel(cost: Pick<CostModel, 'decodeTokensPerSecondPerRank' | 'decodeHalfSaturationConcurrency' | 'prefillMsPerThousandTokens'>): RankModel {
  return {
    kvCapacityTokens: Infinity,
    sharedPrefill: false,
    maxRunningRequests: Infinity,
    // Per-request rate peak / (running + half); a step yields one token per request.
    decodeStepMs: (batch) => ((batch + cost.decodeHalfSaturationConcurrency) / cost.decodeTokensPerSecondPerRank) * 1000,
    prefillMs: (uncached) => (uncached / 1000) * cost.prefillMsPerThousandTokens,
    peakDecodeTokensPerSecond: cost.decodeTokensPerSecondPerRank,
    peakPrefillTokensPerSecond: cost.prefillMsPerThousandTokens > 0 ? 1e6 / cost.prefillMsPerThousandTokens : Infinity,
  };
}

/** Training throughput per GPU (tokens/s): 6 · active parameters per token at the MFU. */
export function trainTokensPerSecondPerGpu(hw: Hardware): number {
  return (hw.gpu.tflops * 1e12 * hw.trainMfu) / (6 * hw.model.activeParametersB * 1e9);
}

/** Training memory per GPU of a group of `trainGpus`: sharded state + one sequence's activations. */
export function trainMemoryGiBPerGpu(hw: Hardware, trainGpus: number, maxTokens: number): number {
  const state = (hw.model.parametersB * 1e9 * hw.trainBytesPerParameter) / trainGpus;
  return (state + activationBytesPerGpu(hw, maxTokens)) / GIB;
}

function activationBytesPerGpu(hw: Hardware, maxTokens: number): number {
  return (hw.model.layers * attentionWidth(hw.model) * hw.trainActivationBytesPerHidden * maxTokens) / hw.trainActivationShards;
}

/** The smallest train group whose memory holds the training state and activations at `maxTokens`. */
export function minimumTrainGpus(hw: Hardware, maxTokens: number): number {
  const perGpu = hw.gpu.memoryGiB * GIB - activationBytesPerGpu(hw, maxTokens);
  if (perGpu <= 0) throw new Error(`training ${hw.model.name} at ${maxTokens} tokens: one sequence's activations do not fit a ${hw.gpu.name}`);
  const gpus = Math.ceil((hw.model.parametersB * 1e9 * hw.trainBytesPerParameter) / perGpu);
  checkPostcondition('minimum train group fits', trainMemoryGiBPerGpu(hw, gpus, maxTokens) <= hw.gpu.memoryGiB, () => `${gpus} GPUs`);
  return gpus;
}

/** Host↔device transfer of `bytes` per GPU (ms). */
function transferMs(bytesPerGpu: number, gbps: number): number {
  return (bytesPerGpu / (gbps * GB)) * 1000;
}

/**
 * The cost model's fields derived from the hardware for a rank of `gpusPerRank` GPUs and a train
 * group of `trainGpus`: rank memory, decode peak, offload/onload (the weights over the host link;
 * the KV cache is discarded and re-allocated), weight sync, trainer state transfers, training rate.
 */
export function derivedCostModel(base: CostModel, hw: Hardware, gpusPerRank: number, trainGpus: number): CostModel {
  const capacity = rankCapacity(hw, gpusPerRank);
  const rank = rooflineRankModel(hw, gpusPerRank);
  const weightsPerGpu = weightBytes(hw.model) / gpusPerRank;
  const trainerPerGpu = trainGpus > 0 ? (hw.model.parametersB * 1e9 * hw.trainBytesPerParameter) / trainGpus : 0;
  const weightMoveMs = transferMs(weightsPerGpu, hw.gpu.hostLinkGBps);
  return {
    ...base,
    decodeTokensPerSecondPerRank: rank.peakDecodeTokensPerSecond,
    prefillMsPerThousandTokens: 1e6 / rank.peakPrefillTokensPerSecond,
    offloadMs: weightMoveMs,
    onloadMs: weightMoveMs,
    weightSyncMs: transferMs(weightsPerGpu, hw.weightSyncGBps ?? hw.gpu.hostLinkGBps),
    trainerOnloadMs: transferMs(trainerPerGpu, hw.gpu.hostLinkGBps),
    trainerOffloadMs: transferMs(trainerPerGpu, hw.gpu.hostLinkGBps),
    trainTokensPerSecondPerGpu: trainTokensPerSecondPerGpu(hw),
    gpuMemoryGiB: hw.gpu.memoryGiB,
    rolloutWeightsGiBPerGpu: capacity.weightsGiBPerGpu,
    rolloutKvCacheGiBPerGpu: capacity.kvCacheGiBPerGpu,
    trainerGiBPerGpu: trainerPerGpu / GIB,
  };
}
