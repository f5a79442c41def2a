/**
 * The discrete-event simulator: determinism, exact-once accounting of samples, GPU time that adds
 * up, the decode model against its closed form, timelines within their span, and the policies.
 */
import { describe, expect, it } from 'vitest';
import { parseRunConfig } from '../../src/config';
import { decodeTokensPerMsPerRequest, weightBroadcastMs } from '../../src/engines/simulated/costFunctions';
import { assumedRateRankModel } from '../../src/engines/simulated/roofline';
import { costModelSchema } from '../../src/engines/types';
import { adaptiveShrinkReady, planShrinkByLeastWork, ROLL_BASELINE_POLICY, trainGroupIsMovable } from '../../src/gpu';
import { simulationConfig } from '../../src/simulator/config';
import { EventQueue } from '../../src/simulator/eventQueue';
import { asStrategy } from '../../src/simulator/presets';
import { strategyReport } from '../../src/simulator/report';
import { simulate, type SimulationResult } from '../../src/simulator/simulator';
import { VirtualRank } from '../../src/simulator/virtualRank';
import { TIMELINE_ROLES } from '../../src/timeline/types';
import { expectValidation } from '../gpu/helpers';

/** 4 nodes × 4 GPUs, ranks of 2 GPUs (8 ranks), the train group on nodes 0-2 (6 ranks). */
const BASE: Record<string, unknown> = {
  run: { id: 'sim-test', iterations: 4 },
  pool: { nodes: 4, gpusPerNode: 4 },
  strategy: 'multiplexed',
  rollout: { gpus: 'all', gpusPerRank: 2 },
  train: { gpus: '0-11' },
  batchSize: 32,
  asyncRatio: 1,
  maxTurns: 30,
  maxTokens: 32768,
  environmentTimeoutSeconds: 900,
  simulation: { workload: { seed: 7, turns: { median: 8, p90: 20 } } },
};

function run(strategy: 'multiplexed' | 'disaggregated' | 'colocated', options: Parameters<typeof simulationConfig>[1] = {}): SimulationResult {
  return simulate(simulationConfig(asStrategy(BASE, strategy, '<test>'), { timelineIterations: 2, ...options }));
}

describe('simulator', () => {
  it('is deterministic for a seed and changes with it', () => {
    const a = run('multiplexed');
    const b = run('multiplexed');
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
    const other = simulate(
      simulationConfig(parseRunConfig({ ...BASE, simulation: { workload: { seed: 8, turns: { median: 8, p90: 20 } } } }, '<test>'), { timelineIterations: 2 }),
    );
    expect(other.totals.virtualMs).not.toBe(a.totals.virtualMs);
  });

  for (const strategy of ['multiplexed', 'disaggregated', 'colocated'] as const) {
    it(`${strategy}: every batch full, every admitted sample trained, dropped or still live; GPU time adds up`, () => {
      const result = run(strategy);
      expect(result.iterations).toHaveLength(4);
      for (const record of result.iterations) {
        expect(record.batchSamples).toBe(32);
        expect(record.endMs).toBeGreaterThan(record.startMs);
      }
      const admitted = result.iterations.reduce((n, r) => n + r.admitted, 0);
      const dropped = result.iterations.reduce((n, r) => n + Object.values(r.dropped).reduce((a, b) => a + (b ?? 0), 0), 0);
      const live = result.iterations.at(-1)!.carriedOver;
      expect(result.totals.trainedSamples).toBe(4 * 32);
      expect(result.totals.trainedSamples + dropped + live).toBe(admitted);
      // Each GPU is in exactly one role at every instant.
      const gpuMs = TIMELINE_ROLES.reduce((n, role) => n + result.gpuMsByRole[role], 0);
      expect(gpuMs / (16 * result.totals.virtualMs)).toBeCloseTo(1, 9);
      // Only released ranks or the train group train; a colocated pool never rolls out while training.
      expect(result.gpuMsByRole.train).toBeGreaterThan(0);
      expect(result.gpuMsByRole.rollout).toBeGreaterThan(0);
      if (strategy === 'disaggregated') expect(result.gpuMsByRole.offload).toBe(0);
    });
  }

  it('timelines: segments inside the recorded span, on known lanes, never overlapping within a lane', () => {
    for (const strategy of ['multiplexed', 'disaggregated', 'colocated'] as const) {
      const { timeline } = run(strategy);
      expect(timeline.source).toBe('simulator');
      expect(timeline.segments.length).toBeGreaterThan(0);
      const lanes = new Set(timeline.lanes);
      const byLane = new Map<string, { startMs: number; endMs: number }[]>();
      for (const segment of timeline.segments) {
        expect(lanes.has(segment.lane)).toBe(true);
        expect(segment.startMs).toBeGreaterThanOrEqual(0);
        expect(segment.endMs).toBeGreaterThan(segment.startMs);
        expect(segment.endMs).toBeLessThanOrEqual(timeline.endMs);
        byLane.set(segment.lane, [...(byLane.get(segment.lane) ?? []), segment]);
      }
      for (const segments of byLane.values()) {
        for (let i = 1; i < segments.length; i++) expect(segments[i]!.startMs).toBeGreaterThanOrEqual(segments[i - 1]!.endMs);
      }
      // Disaggregated: train GPUs outside the rollout ranks get lanes of their own.
      if (strategy === 'disaggregated') expect(timeline.lanes.filter((lane) => lane.includes('train'))).toHaveLength(3);
      if (strategy === 'multiplexed') expect(timeline.segments.some((s) => s.role === 'train') && timeline.segments.some((s) => s.role === 'offload')).toBe(true);
    }
  });

  it('disaggregated train GPUs wait for data: far more idle GPU time than multiplexed', () => {
    const mux = strategyReport(run('multiplexed'));
    const dis = strategyReport(run('disaggregated'));
    expect(dis.idleFraction).toBeGreaterThan(0.5);
    expect(mux.idleFraction).toBeLessThan(0.2);
  });

  it('the ROLL-like baseline throws interrupted turns away; keep-prefix keeps every decoded token', () => {
    const keep = run('multiplexed');
    const roll = run('multiplexed', { policy: ROLL_BASELINE_POLICY });
    expect(keep.totals.discardedTokens).toBe(0);
    expect(roll.totals.discardedTokens).toBeGreaterThan(0);
    expect(roll.totals.migrated).toBeGreaterThan(0);
  });

  it("batchMarginMs: the gap after each batch's last completion; null when no completion followed", () => {
    // Colocated: nothing rolls out after the last batch is sealed.
    const colocated = run('colocated').iterations.map((record) => record.batchMarginMs);
    expect(colocated.at(-1)).toBeNull();
    for (const margin of colocated.slice(0, -1)) expect(margin).toBeGreaterThanOrEqual(0);
    // Multiplexed: the kept ranks roll out on after every batch, so a completion always follows.
    const multiplexed = run('multiplexed').iterations.map((record) => record.batchMarginMs);
    for (const margin of multiplexed) expect(margin).toBeGreaterThanOrEqual(0);
  });

  it('orderMarginMs: the shortest gap between completions on different ranks, up to the batch', () => {
    for (const record of run('multiplexed').iterations) {
      // 32 completions over 8 ranks: some consecutive pair lies on different ranks.
      expect(record.orderMarginMs).toBeGreaterThanOrEqual(0);
      // Between completions within the iteration: never longer than it.
      expect(record.orderMarginMs!).toBeLessThanOrEqual(record.endMs - record.startMs);
    }
  });

  it('least-work release moves the train group to the ranks with the least in-flight work', () => {
    const result = run('multiplexed', { policy: { ...ROLL_BASELINE_POLICY, release: 'least-work' } });
    for (const record of result.iterations) expect(record.released).toHaveLength(6);
    expect(result.totals.trainedSamples).toBe(4 * 32);
  });
});

describe('virtual rank (decode model)', () => {
  const cost = costModelSchema.parse({});
  const model = assumedRateRankModel(cost);

  it('n equal requests started together finish at prefill + target / (per-request rate at n)', () => {
    // 5000 uncached context tokens at 40 ms per 1000: a 200 ms prefill timer per request.
    const queue = new EventQueue();
    let now = 0;
    const rank = new VirtualRank(model, queue, () => now);
    const done: number[] = [];
    for (let i = 0; i < 5; i++) rank.start(i, 5000, 1000, () => done.push(now));
    for (let event = queue.pop(); event !== undefined; event = queue.pop()) {
      now = event.at;
      event.run();
    }
    const expected = 200 + 1000 / decodeTokensPerMsPerRequest(cost, 5);
    expect(done).toHaveLength(5);
    for (const t of done) expect(t).toBeCloseTo(expected, 6);
  });

  it('an aborted request reports the tokens decoded so far; the others speed up', () => {
    const queue = new EventQueue();
    let now = 0;
    const rank = new VirtualRank(model, queue, () => now);
    const finished: number[] = [];
    const a = rank.start(0, 0, 1000, () => finished.push(now));
    rank.start(1, 0, 1000, () => finished.push(now));
    const abortAt = 3000;
    queue.schedule(abortAt, () => {
      const decoded = rank.abort(a);
      expect(decoded).toBe(Math.floor(abortAt * decodeTokensPerMsPerRequest(cost, 2)));
    });
    for (let event = queue.pop(); event !== undefined; event = queue.pop()) {
      now = event.at;
      event.run();
    }
    const left = 1000 - abortAt * decodeTokensPerMsPerRequest(cost, 2);
    expect(finished).toHaveLength(1);
    expect(finished[0]).toBeCloseTo(abortAt + left / decodeTokensPerMsPerRequest(cost, 1), 6);
  });

  it('the event queue runs events at one instant in scheduling order', () => {
    const queue = new EventQueue();
    const order: string[] = [];
    queue.schedule(5, () => order.push('b'));
    queue.schedule(1, () => order.push('a'));
    queue.schedule(5, () => order.push('c'));
    queue.schedule(5, () => order.push('x')).cancelled = true;
    for (let event = queue.pop(); event !== undefined; event = queue.pop()) event.run();
    expect(order).toEqual(['a', 'b', 'c']);
    expect(() => queue.schedule(Number.NaN, () => undefined)).toThrow(/finite/);
  });
});

describe('policies (pure)', () => {
  const layout = asStrategy(BASE, 'multiplexed', '<test>').layout;

  it('least-work picks the ranks with the least work, ties to the lowest id', () => {
    expect(trainGroupIsMovable(layout)).toBe(true);
    const work = [50, 10, 10, 90, 0, 70, 30, 20].map((w, rank) => ({ rank, work: w }));
    const plan = planShrinkByLeastWork(layout, work);
    expect(plan.release).toEqual([0, 1, 2, 4, 6, 7]);
    expect(plan.keep).toEqual([3, 5]);
    expect(plan.trainGpus).toEqual([0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 14, 15]);
  });

  it('least-work refuses a train group that cannot move, and missing work', () => {
    const disaggregated = asStrategy(BASE, 'disaggregated', '<test>').layout;
    expect(trainGroupIsMovable(disaggregated)).toBe(false);
    expectValidation(() => planShrinkByLeastWork(disaggregated, []), 'VAL_SUBSET', 'least-work shrink');
    expectValidation(() => planShrinkByLeastWork(layout, [{ rank: 0, work: 1 }]), 'AST_POSTCONDITION', 'work known for every rank');
  });

  it('the adaptive trigger waits while the kept ranks would run at under half the per-sample speed, up to its cap', () => {
    const base = { keepRanks: 2, allRanks: 8, halfSaturation: 16, waitedMs: 0, maxWaitMs: 1000 };
    expect(adaptiveShrinkReady({ ...base, running: 400 })).toBe(false);
    expect(adaptiveShrinkReady({ ...base, running: 20 })).toBe(true);
    expect(adaptiveShrinkReady({ ...base, running: 400, waitedMs: 1000 })).toBe(true);
    expectValidation(() => adaptiveShrinkReady({ ...base, running: 1, keepRanks: 0 }), 'VAL_INT_RANGE', 'kept ranks');
  });
});

describe('simulator: weight sync by broadcast', () => {
  const costModel = { weightSyncMs: 20_000, rolloutWeightsGiBPerGpu: 30, broadcastGiBPerSecond: 25 };
  const withSync = (mode: 'disk' | 'broadcast') =>
    simulate(
      simulationConfig(parseRunConfig({ ...BASE, engine: { weightSync: { mode } }, simulation: { ...(BASE.simulation as object), costModel } }, '<test>'), {
        timelineIterations: 0,
      }),
    );

  it('costs the sync phase as weightBroadcastMs (one collective for every rank), the disk sync as weightSyncMs', () => {
    const disk = withSync('disk');
    const broadcast = withSync('broadcast');
    const cost = costModelSchema.parse(costModel);
    // Ranks of 2 GPUs: 60 GiB at 25 GiB/s.
    expect(broadcast.weightSyncMs).toBeCloseTo(weightBroadcastMs(cost, 2), 6);
    expect(broadcast.weightSyncMs).toBeCloseTo(2400, 6);
    expect(disk.weightSyncMs).toBe(20_000);
    for (let i = 0; i < 4; i++) {
      const syncDisk = disk.iterations[i]!.phaseMs.sync!;
      const syncBroadcast = broadcast.iterations[i]!.phaseMs.sync!;
      expect(syncDisk).toBeGreaterThanOrEqual(20_000);
      expect(syncBroadcast).toBeGreaterThanOrEqual(2400);
      expect(syncBroadcast).toBeLessThan(syncDisk - 15_000);
    }
  });

  it('forms the weight-update group once and keeps it: the first sync pays two more round trips than the later ones', () => {
    const broadcast = withSync('broadcast');
    const syncs = broadcast.iterations.map((record) => record.phaseMs.sync!);
    const roundTrip = simulationConfig(parseRunConfig(BASE, '<test>')).controlPlane.activityRoundTripMs;
    for (const later of syncs.slice(1)) expect(syncs[0]! - later).toBeCloseTo(2 * roundTrip, 6);
  });
});

describe('staleness policies in the simulator', () => {
  // A heavy tail (p90 28 turns against a median of 6) over 8 iterations: 'drop' loses the long ones.
  const tail = { ...BASE, run: { id: 'sim-stale', iterations: 8 }, simulation: { workload: { seed: 3, turns: { median: 6, p90: 28 } } } };
  const sim = (staleness: 'drop' | 'resume') => simulate(simulationConfig(asStrategy(tail, 'multiplexed', '<test>'), { staleness }));

  it("'drop' discards the long tail as stale; 'resume' discards nothing, trains every decided sample and keeps the trained turns unbiased", () => {
    const drop = strategyReport(sim('drop'));
    const resume = strategyReport(sim('resume'));
    expect(drop.staleDrops).toBeGreaterThan(0);
    expect(drop.staleness.utilization.trajectories).toBeLessThan(1);
    expect(drop.staleness.turnsKs).toBeGreaterThan(0.05);
    // Under 'drop' no trained token lags more than the async ratio (its samples are at most 1 version old).
    expect(drop.staleness.tokenLag.max).toBeLessThanOrEqual(1);
    expect(resume.staleDrops).toBe(0);
    expect(resume.staleness.utilization.trajectories).toBe(1);
    expect(resume.staleness.turnsKs).toBe(0);
    // The long tail trains late: some tokens lag more than one version, most do not.
    expect(resume.staleness.tokenLag.max).toBeGreaterThan(1);
    expect(resume.staleness.tokenLag.mean).toBeLessThan(resume.staleness.tokenLag.max);
  });

  it('every trained generated token has a version, and tokens over the hard lag limit are counted', () => {
    const result = simulate(simulationConfig(asStrategy({ ...tail, rollout: { ...(BASE.rollout as object), staleness: { policy: 'resume', maxTokenLag: 1 } } }, 'multiplexed', '<test>')));
    const s = result.totals.staleness;
    expect(Object.values(s.lagHistogram).reduce((a, b) => a + b, 0)).toBe(s.trainedGeneratedTokens);
    const overOne = Object.entries(s.lagHistogram).filter(([lag]) => Number(lag) > 1).reduce((a, [, n]) => a + n, 0);
    expect(s.tokensOverLagLimit).toBe(overOne);
    expect(overOne).toBeGreaterThan(0);
  });
});
