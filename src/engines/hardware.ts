/**
 * The `simulation.hardware` config section: the model's architecture and the GPU type from which
 * the simulator's capacity-aware rank model derives its costs (src/engines/simulated/roofline.ts). Here,
 * beside the other config sections the engines define, so the config schema needs nothing from
 * the simulated engines' code.
 */
import { z } from 'zod';

const positive = (): z.ZodNumber => z.number().positive();
const fraction = (): z.ZodNumber => z.number().gt(0).max(1);
const count = (): z.ZodNumber => z.number().int().positive();

export const modelArchitectureSchema = z
  .object({
    name: z.string().min(1),
    /** All parameters (billions). */
    parametersB: positive(),
    /** Parameters one token activates (billions); = parametersB for a dense model. */
    activeParametersB: positive(),
    layers: count(),
    /** Query heads × head dim (the attention width), for attention FLOPs. */
    attentionHeads: count(),
    kvHeads: count(),
    headDim: count(),
    /** Mixture of experts: routed experts per layer and experts per token (absent: dense). */
    experts: z.object({ count: count(), perToken: count() }).strict().optional(),
    /** Bytes per weight (2: BF16, 1: FP8). */
    weightBytes: positive().default(2),
    /** Bytes per KV-cache element (2: BF16, 1: FP8 KV cache). */
    kvBytes: positive().default(2),
  })
  .strict()
  .refine((m) => m.activeParametersB <= m.parametersB, { message: 'activeParametersB must be <= parametersB', path: ['activeParametersB'] })
  .refine((m) => m.experts === undefined || m.experts.perToken <= m.experts.count, { message: 'experts.perToken must be <= experts.count', path: ['experts'] });
export type ModelArchitecture = z.infer<typeof modelArchitectureSchema>;

export const gpuSpecSchema = z
  .object({
    name: z.string().min(1),
    memoryGiB: positive(),
    /** HBM bandwidth (TB/s). */
    hbmTBps: positive(),
    /** Dense BF16 tensor throughput (TFLOP/s). */
    tflops: positive(),
    /** Effective host↔device bandwidth per GPU (GB/s): offload, onload, trainer state. */
    hostLinkGBps: positive(),
  })
  .strict();
export type GpuSpec = z.infer<typeof gpuSpecSchema>;

export const hardwareSchema = z
  .object({
    model: modelArchitectureSchema,
    gpu: gpuSpecSchema,
    /** Share of GPU memory the inference engine takes (vLLM gpu_memory_utilization, SGLang mem_fraction_static). */
    memoryFraction: fraction().default(0.9),
    /** Achieved share of HBM bandwidth in a decode step. */
    hbmEfficiency: fraction().default(0.75),
    /** Achieved share of peak FLOP/s in decode and prefill. */
    computeEfficiency: fraction().default(0.5),
    /** Fixed time per decode step (scheduling, kernel launches, TP all-reduce latency), ms. */
    stepOverheadMs: z.number().nonnegative().default(2),
    /** The engine's cap on running requests per rank (SGLang max_running_requests, vLLM max_num_seqs). */
    maxRunningRequests: count().default(256),
    /** Weight-sync bandwidth per GPU (GB/s); default: the host link (weights pushed from host memory). */
    weightSyncGBps: positive().optional(),
    /** Training model FLOPs utilisation (6 · active parameters · tokens). */
    trainMfu: fraction().default(0.3),
    /** Training bytes per parameter: BF16 weights 2 + gradients 2 + Adam FP32 master, m, v 12. */
    trainBytesPerParameter: positive().default(16),
    /** Ways one sequence's activations are split in training (context × tensor parallelism). */
    trainActivationShards: count().default(8),
    /** Activation bytes per token per layer kept for backward, in units of the hidden size (full recompute: 2). */
    trainActivationBytesPerHidden: positive().default(2),
  })
  .strict();
export type Hardware = z.infer<typeof hardwareSchema>;
