/**
 * The capacity-aware rank model: KV capacity and costs from the model and hardware (roofline),
 * a rank's queueing, prefix reuse and eviction, shared prefill, and what the simulator makes of
 * them (environment timeout during a step, limit cuts, the report's work figures).
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRunConfig } from '../../src/config';
import { hardwareSchema } from '../../src/engines/hardware';
import {
  kvBytesPerToken,
  minimumTrainGpus,
  parametersReadPerStep,
  rankCapacity,
  rooflineRankModel,
  simulatedKvCapacityTokens,
  trainMemoryGiBPerGpu,
  type RankModel,
} from '../../src/engines/simulated/roofline';
import { WorkloadModel } from '../../src/engines/simulated/workload';
import { rankCosts, simulationConfig } from '../../src/simulator/config';
import { EventQueue } from '../../src/simulator/eventQueue';
import { asStrategy, presetPath, readRawConfig } from '../../src/simulator/presets';
import { strategyReport } from '../../src/simulator/report';
import { simulate } from '../../src/simulator/simulator';
import { VirtualRank } from '../../src/simulator/virtualRank';

const QWEN3_235B_H800 = hardwareSchema.parse({
  model: {
    name: 'Qwen3-235B-A22B',
    parametersB: 235.1,
    activeParametersB: 22.2,
    layers: 94,
    attentionHeads: 64,
    kvHeads: 4,
    headDim: 128,
    experts: { count: 128, perToken: 8 },
  },
  gpu: { name: 'H800', memoryGiB: 80, hbmTBps: 3.35, tflops: 989, hostLinkGBps: 25 },
});

const LLAMA_8B_H100 = hardwareSchema.parse({
  model: { name: 'Llama-3.1-8B', parametersB: 8.03, activeParametersB: 8.03, layers: 32, attentionHeads: 32, kvHeads: 8, headDim: 128 },
  gpu: { name: 'H100', memoryGiB: 80, hbmTBps: 3.35, tflops: 989, hostLinkGBps: 25 },
});

describe('roofline: capacity and costs from the model and the hardware', () => {
  it('KV bytes per token count K and V per layer per KV head, replicated when TP exceeds the KV heads', () => {
    // 2 (K, V) × 94 layers × 4 heads × 128 × 2 bytes = 192,512; TP 8 over 4 KV heads: each held twice.
    expect(kvBytesPerToken(QWEN3_235B_H800.model, 4)).toBe(192_512);
    expect(kvBytesPerToken(QWEN3_235B_H800.model, 8)).toBe(385_024);
    expect(kvBytesPerToken(LLAMA_8B_H100.model, 1)).toBe(131_072);
  });

  it('KV capacity is the usable memory left by the weights, over the bytes per token', () => {
    const capacity = rankCapacity(QWEN3_235B_H800, 8);
    const usable = 8 * 80 * 1024 ** 3 * 0.9;
    expect(capacity.kvCapacityTokens).toBe(Math.floor((usable - 235.1e9 * 2) / 385_024));
    expect(capacity.weightsGiBPerGpu).toBeCloseTo((235.1e9 * 2) / 8 / 1024 ** 3, 9);
    // FP8 weights leave more room; the model does not fit 4 GPUs in BF16.
    const fp8 = rankCapacity({ ...QWEN3_235B_H800, model: { ...QWEN3_235B_H800.model, weightBytes: 1 } }, 8);
    expect(fp8.kvCapacityTokens).toBeGreaterThan(2 * capacity.kvCapacityTokens);
    expect(() => rankCapacity(QWEN3_235B_H800, 4)).toThrow(/does not fit a rank of 4 × H800/);
  });

  it('an MoE batch touches more experts as it grows: active parameters at batch 1, nearly all at a large batch', () => {
    const model = QWEN3_235B_H800.model;
    expect(parametersReadPerStep(model, 1)).toBeCloseTo(22.2e9, -3);
    expect(parametersReadPerStep(model, 256) / 235.1e9).toBeGreaterThan(0.99);
    expect(parametersReadPerStep(LLAMA_8B_H100.model, 256)).toBeCloseTo(8.03e9, -3);
  });

  it('a decode step is memory-bound at small batches (weights + KV over bandwidth) and compute-bound at large ones', () => {
    const rank = rooflineRankModel(LLAMA_8B_H100, 1);
    const bandwidth = 3.35e12 * 0.75;
    // Batch 1, 10K tokens of KV: bytes over bandwidth, plus the step overhead.
    expect(rank.decodeStepMs(1, 10_000)).toBeCloseTo(((8.03e9 * 2 + 10_000 * 131_072) / bandwidth) * 1000 + 2, 6);
    // Batch 4096 with no KV: 2 FLOPs per parameter per token over the achieved FLOP/s.
    expect(rank.decodeStepMs(4096, 0)).toBeCloseTo(((2 * 8.03e9 * 4096) / (989e12 * 0.5)) * 1000 + 2, 6);
    // Throughput grows with the batch but less than linearly once KV reads dominate.
    const throughput = (batch: number, context: number): number => batch / rank.decodeStepMs(batch, batch * context);
    expect(throughput(64, 4000)).toBeGreaterThan(throughput(8, 4000));
    expect(throughput(64, 4000) / throughput(8, 4000)).toBeLessThan(8);
  });

  it('the smallest train group holds parameters, gradients, optimizer state and one sequence of activations', () => {
    const minimum = minimumTrainGpus(QWEN3_235B_H800, 65_536);
    expect(trainMemoryGiBPerGpu(QWEN3_235B_H800, minimum, 65_536)).toBeLessThanOrEqual(80);
    expect(trainMemoryGiBPerGpu(QWEN3_235B_H800, minimum - 1, 65_536)).toBeGreaterThan(80);
    expect(minimum).toBeGreaterThan(40);
    expect(minimumTrainGpus(LLAMA_8B_H100, 65_536)).toBeLessThanOrEqual(2);
  });

  it('a config whose train group is below that minimum is refused with the figures', () => {
    const file = presetPath('seed-160');
    const raw = { ...readRawConfig(file), train: { gpus: '0-15' } };
    expect(() => rankCosts(parseRunConfig(raw, file))).toThrow(/train group of 16 GPUs cannot hold Qwen3-235B-A22B .* at least \d+ H800 GPUs/);
  });
});

/** A small rank model with round numbers: 1000 KV tokens, 10 ms steps, 1 ms per prefilled token. */
function toyModel(overrides: Partial<RankModel> = {}): RankModel {
  return {
    kvCapacityTokens: 1000,
    sharedPrefill: true,
    maxRunningRequests: 8,
    decodeStepMs: () => 10,
    prefillMs: (uncached) => uncached,
    peakDecodeTokensPerSecond: 800,
    peakPrefillTokensPerSecond: 1000,
    ...overrides,
  };
}

function drive(queue: EventQueue, clock: { now: number }): void {
  for (let event = queue.pop(); event !== undefined; event = queue.pop()) {
    clock.now = event.at;
    event.run();
  }
}

describe('virtual rank: KV capacity, queueing, prefix reuse', () => {
  it('a request beyond the KV capacity waits in the queue until a running one ends', () => {
    const queue = new EventQueue();
    const clock = { now: 0 };
    const rank = new VirtualRank(toyModel(), queue, () => clock.now);
    const ends: Record<number, number> = {};
    rank.start(1, 500, 100, () => (ends[1] = clock.now));
    const second = rank.start(2, 300, 200, () => (ends[2] = clock.now));
    expect(second.phase).toBe('queued');
    expect(rank.queuedAdmissions).toBe(1);
    drive(queue, clock);
    // 600 + 500 tokens > 1000. 1: prefill 500 ms, 100 steps of 10 ms. 2: admitted then, prefill 300 ms, 200 steps.
    expect(ends[1]).toBeCloseTo(1500, 6);
    expect(ends[2]).toBeCloseTo(1500 + 300 + 2000, 6);
  });

  it("a trajectory's next turn prefills only its new tokens while its KV stays resident; eviction costs a full re-prefill", () => {
    const queue = new EventQueue();
    const clock = { now: 0 };
    const rank = new VirtualRank(toyModel(), queue, () => clock.now);
    rank.start(1, 400, 100, () => undefined);
    drive(queue, clock);
    expect(rank.prefilledTokens).toBe(400);
    // Turn 2: the 500 tokens of turn 1 are cached; 100 new observation tokens.
    rank.start(1, 600, 100, () => undefined);
    drive(queue, clock);
    expect(rank.prefilledTokens).toBe(500);
    expect(rank.kvTokensInUse).toBe(700);
    // Another trajectory needs 800 tokens: sample 1's idle prefix is evicted.
    rank.start(2, 700, 100, () => undefined);
    drive(queue, clock);
    expect(rank.evictions).toBe(1);
    rank.start(1, 800, 50, () => undefined);
    drive(queue, clock);
    expect(rank.prefilledTokens).toBe(500 + 700 + 800);
  });

  it('a flush (new weights) drops every idle prefix', () => {
    const queue = new EventQueue();
    const clock = { now: 0 };
    const rank = new VirtualRank(toyModel(), queue, () => clock.now);
    rank.start(1, 400, 100, () => undefined);
    drive(queue, clock);
    rank.flushCache();
    expect(rank.kvTokensInUse).toBe(0);
    rank.start(1, 600, 100, () => undefined);
    drive(queue, clock);
    expect(rank.prefilledTokens).toBe(1000);
  });

  it('shared prefill: decoding pauses while another request prefills', () => {
    const queue = new EventQueue();
    const clock = { now: 0 };
    const rank = new VirtualRank(toyModel({ kvCapacityTokens: 10_000 }), queue, () => clock.now);
    const ends: number[] = [];
    rank.start(1, 100, 50, () => ends.push(clock.now));
    queue.schedule(300, () => rank.start(2, 200, 10, () => ends.push(clock.now)));
    drive(queue, clock);
    // 1: prefill 0-100, decodes 100-300 (20 tokens), pauses 300-500 while 2 prefills, then 30
    // tokens alongside 2 (both at 10 ms a step): 2 ends at 600, 1 at 800.
    expect(ends[0]).toBeCloseTo(600, 6);
    expect(ends[1]).toBeCloseTo(800, 6);
    // Potential: 1 decodes unpaused 100-300 (and would at batch 1 from 0), 2 requests 300-600, 1 after.
    expect(rank.decodedTokens).toBeCloseTo(60, 6);
    expect(rank.potentialTokens).toBeGreaterThan(rank.decodedTokens);
  });

  it('aborting a queued request frees its place; aborting a decoding one keeps its decoded KV resident', () => {
    const queue = new EventQueue();
    const clock = { now: 0 };
    const rank = new VirtualRank(toyModel(), queue, () => clock.now);
    const first = rank.start(1, 500, 400, () => undefined);
    const waiting = rank.start(2, 500, 100, () => undefined);
    expect(waiting.phase).toBe('queued');
    expect(rank.abort(waiting)).toBe(0);
    queue.schedule(600, () => expect(rank.abort(first)).toBe(10));
    drive(queue, clock);
    expect(rank.running).toBe(0);
    expect(rank.kvTokensInUse).toBe(510);
  });

  it('a request that can never fit the rank is refused with the figures', () => {
    const rank = new VirtualRank(toyModel(), new EventQueue(), () => 0);
    expect(() => rank.start(1, 900, 200, () => undefined)).toThrow(/needs 1100 KV tokens .* capacity of 1000/);
  });
});

describe('simulator with the capacity-aware model', () => {
  /** 2 nodes × 8 GPUs of the 8B model, one GPU per rank, the train group on node 0. */
  const DENSE: Record<string, unknown> = {
    run: { id: 'capacity-test', iterations: 3 },
    pool: { nodes: 2, gpusPerNode: 8 },
    strategy: 'multiplexed',
    rollout: { gpus: 'all', gpusPerRank: 1 },
    train: { gpus: '0-7' },
    batchSize: 32,
    asyncRatio: 1,
    maxTurns: 12,
    maxTokens: 16_384,
    environmentTimeoutSeconds: 600,
    simulation: {
      workload: { seed: 3, turns: { median: 10, p90: 30 }, envStepMs: { median: 2000, p90: 400_000 } },
      hardware: {
        model: { name: 'Llama-3.1-8B', parametersB: 8.03, activeParametersB: 8.03, layers: 32, attentionHeads: 32, kvHeads: 8, headDim: 128 },
        gpu: { name: 'H100', memoryGiB: 80, hbmTBps: 3.35, tflops: 989, hostLinkGBps: 25 },
      },
    },
  };

  it('tool steps longer than the environment timeout are cut and counted as timeouts; every batch still fills', () => {
    const parsed = asStrategy(DENSE, 'multiplexed', '<test>');
    const result = simulate(simulationConfig(parsed));
    const report = strategyReport(result);
    expect(report.timeouts).toBeGreaterThan(0);
    for (const record of result.iterations) expect(record.batchSamples).toBe(32);
    expect(result.totals.dropped['environment-timeout']).toBe(report.timeouts);
  });

  it('counts the trajectories the turn limit cut: exactly the admitted ones drawn above maxTurns', () => {
    const parsed = asStrategy(DENSE, 'multiplexed', '<test>');
    const result = simulate(simulationConfig(parsed));
    const admitted = result.iterations.reduce((n, r) => n + r.admitted, 0);
    const workload = WorkloadModel.fromParams(parsed.config.simulation.workload, { maxTurns: 12, maxTokens: 16_384 });
    const expected = Array.from({ length: admitted }, (_, id) => id).filter((id) => workload.drawnTurns(id) > 12).length;
    expect(expected).toBeGreaterThan(0);
    expect(result.totals.cutByTurnLimit).toBe(expected);
    expect(result.totals.cutByTokenLimit).toBeGreaterThanOrEqual(0);
  });

  it('reports work-weighted occupancy and the fraction of the ideal bound, both within (0, 1]', () => {
    for (const strategy of ['multiplexed', 'disaggregated', 'colocated'] as const) {
      const report = strategyReport(simulate(simulationConfig(asStrategy(DENSE, strategy, '<test>'))));
      expect(report.kvCapacityTokensPerRank).toBe(rankCapacity(hardwareSchema.parse((DENSE.simulation as { hardware: unknown }).hardware), 1).kvCapacityTokens);
      expect(report.idealBoundFraction).toBeGreaterThan(0);
      expect(report.idealBoundFraction).toBeLessThanOrEqual(1);
      expect(report.rolloutWorkOccupancy).toBeGreaterThan(0);
      expect(report.rolloutWorkOccupancy).toBeLessThanOrEqual(1 + 1e-9);
      expect(report.prefillPerDecodedToken).toBeGreaterThan(0);
    }
  });
});

describe("the admission's KV cap in the simulator", () => {
  const file = presetPath('seed-160');

  it("takes the capacity per rank the simulated engines report (the rank model's), at most the config's; the assumed-rate model reports none unless declared", () => {
    const parsed = asStrategy(readRawConfig(file), 'multiplexed', file);
    const roofline = rankCosts(parsed).rankModel.kvCapacityTokens;
    expect(simulationConfig(parsed).kvCapacityTokensPerRank).toBe(roofline);
    expect(simulatedKvCapacityTokens(parsed.config.simulation.costModel, parsed.config.simulation.hardware, 8)).toBe(roofline);
    expect(simulationConfig(parsed, { kvCap: 'off' }).kvCapacityTokensPerRank).toBeUndefined();
    const withConfig = (tokens: number) => asStrategy({ ...readRawConfig(file), rollout: { ...(readRawConfig(file).rollout as object), kvCapacityTokensPerRank: tokens } }, 'multiplexed', file);
    expect(simulationConfig(withConfig(100_000)).kvCapacityTokensPerRank).toBe(100_000);
    // The config bounds what the engines report; it does not raise it.
    expect(simulationConfig(withConfig(10 * roofline)).kvCapacityTokensPerRank).toBe(roofline);
    const small = { pool: { nodes: 1, gpusPerNode: 4 }, strategy: 'multiplexed', train: { gpus: [0, 1] }, batchSize: 8, maxTokens: 4096 };
    const assumed = parseRunConfig(small, '<test>');
    expect(simulationConfig(assumed).kvCapacityTokensPerRank).toBeUndefined();
    const declared = parseRunConfig({ ...small, simulation: { costModel: { kvCapacityTokensPerRank: 8192 } } }, '<test>');
    expect(simulatedKvCapacityTokens(declared.config.simulation.costModel, undefined, 1)).toBe(8192);
    expect(simulationConfig(declared).kvCapacityTokensPerRank).toBe(8192);
    expect(simulationConfig(parseRunConfig({ ...small, rollout: { kvCapacityTokensPerRank: 4096 }, simulation: { costModel: { kvCapacityTokensPerRank: 8192 } } }, '<test>')).kvCapacityTokensPerRank).toBe(4096);
  });

  it("under 'resume', fewer generate calls wait for KV room and less is prefilled again, from the first admission on", () => {
    const parsed = asStrategy(readRawConfig(file), 'multiplexed', file);
    const run = (kvCap: 'known' | 'off') => simulate(simulationConfig(parsed, { iterations: 3, staleness: 'resume', baseDir: path.dirname(file), kvCap }));
    const capped = run('known');
    const uncapped = run('off');
    // Nothing trained before the first batch: the cap counts each rolling sample as growing towards
    // rollout.maxTokens, so the first iteration admits fewer than the batch-size cap alone.
    expect(capped.iterations[0]!.admitted).toBeLessThan(uncapped.iterations[0]!.admitted);
    const queued = (r: typeof capped): number => r.rankTotals.queuedAdmissions / r.rankTotals.admitted;
    const prefilled = (r: typeof capped): number => r.rankTotals.prefilledTokens / r.rankTotals.decodedTokens;
    expect(queued(capped)).toBeLessThan(queued(uncapped));
    expect(prefilled(capped)).toBeLessThan(prefilled(uncapped));
  }, 120_000);
});
