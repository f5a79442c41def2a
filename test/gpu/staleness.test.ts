/** Staleness policies, the admission bound, per-token versions and the staleness figures. */
import { describe, expect, it } from 'vitest';
import {
  addCount,
  addTokenLags,
  ADMISSION_STEPS_PER_CAP,
  admissionPoint,
  admissionRoom,
  admit,
  appendSpan,
  assignToShard,
  carryOverStaleIds,
  emptyLedger,
  expandSpans,
  ksDistance,
  KV_CAP_MARGIN_SDS,
  kvRunningCap,
  residentContextBeforeTraining,
  rankKvCapacity,
  rollingKvCapacity,
  ranksWithoutKvCapacity,
  lagSummary,
  maxRunningSamples,
  residentContext,
  residentContextTokens,
  sampleUtilization,
  settleShard,
  withinLagLimit,
} from '../../src/gpu';
import { expectValidation } from './helpers';

describe('carry-over', () => {
  // 0,1 admitted at v0 (0 completed, 1 waiting), 2 at v1 waiting, 3 at v0 still running.
  let ledger = admit(emptyLedger(), 2, 0).ledger;
  ledger = admit(ledger, 1, 1).ledger;
  ledger = admit(ledger, 1, 0).ledger;
  ledger = assignToShard(ledger, [0, 3], 0, 's');
  ledger = settleShard(ledger, 's', [3]);
  ledger = assignToShard(ledger, [3], 0, 't');

  it("'drop' drops what lags the train version by more than the async ratio, unless running (ROLL's rule)", () => {
    expect(carryOverStaleIds(ledger, 2, 1, 'drop')).toEqual([0, 1]);
    expect(carryOverStaleIds(ledger, 1, 1, 'drop')).toEqual([]);
  });

  it("'resume' drops nothing, however old", () => {
    expect(carryOverStaleIds(ledger, 9, 1, 'resume')).toEqual([]);
  });

  it('refuses an unknown policy', () => {
    expectValidation(() => carryOverStaleIds(ledger, 2, 1, 'keep' as never), 'VAL_SUBSET', 'staleness policy');
  });
});

describe('admissionRoom', () => {
  const base = { batchSize: 4, asyncRatio: 1, maxConcurrentSamples: 8, live: 3, running: 3, batchSealed: false };

  it("'drop' keeps the pipeline's targets: maxConcurrentSamples before the batch, minus a batch after it is sealed", () => {
    expect(admissionRoom({ ...base, policy: 'drop' })).toBe(5);
    expect(admissionRoom({ ...base, policy: 'drop', batchSealed: true })).toBe(1);
    expect(admissionRoom({ ...base, policy: 'drop', maxConcurrentSamples: 20 })).toBe(17);
  });

  it("'resume' caps live samples at (asyncRatio + 1) batches, as AReaL's staleness manager does", () => {
    expect(admissionRoom({ ...base, policy: 'resume', live: 7, running: 0 })).toBe(1);
    expect(admissionRoom({ ...base, policy: 'resume', maxConcurrentSamples: 20, live: 7, running: 0 })).toBe(1);
    expect(admissionRoom({ ...base, policy: 'resume', maxConcurrentSamples: 20, running: 1, batchSealed: true })).toBe(1);
    expect(admissionRoom({ ...base, policy: 'resume', asyncRatio: 0, batchSealed: true })).toBe(0);
  });

  it("'resume' caps the samples rolling out at the batch size (AReaL's default concurrency); completed ones do not count", () => {
    expect(admissionRoom({ ...base, policy: 'resume' })).toBe(1);
    expect(admissionRoom({ ...base, policy: 'resume', running: 0 })).toBe(4);
    expect(admissionRoom({ ...base, policy: 'resume', running: 0, maxConcurrentSamples: 5 })).toBe(2);
    expect(admissionRoom({ ...base, policy: 'drop', running: 0 })).toBe(5);
  });

  it('never goes negative when more samples are live than the bound (a batch-size update, a long tail)', () => {
    expect(admissionRoom({ ...base, policy: 'resume', live: 30, running: 30 })).toBe(0);
  });

  it('validates its inputs', () => {
    expectValidation(() => admissionRoom({ ...base, policy: 'resume', batchSize: 0 }), 'VAL_INT_RANGE', 'admission: batch size');
    expectValidation(() => admissionRoom({ ...base, policy: 'resume', running: 4 }), 'VAL_INT_RANGE', 'admission: running samples');
  });
});

describe('KV cap', () => {
  // Three trained samples of 1000, 2000 and 3000 context tokens: E[L²] / (2 E[L]) = (14e6 / 3) / (2 · 2000).
  const trained = { samples: 3, tokens: 6000, squaredTokens: 14_000_000 };

  it('estimates the resident context of a rolling sample as E[L²] / (2 E[L]) of the trained samples', () => {
    expect(residentContextTokens(trained)).toBeCloseTo(14_000_000 / 3 / 4000, 9);
    // Equal lengths: half the final context (each rolling sample is halfway on average).
    expect(residentContextTokens({ samples: 4, tokens: 4000, squaredTokens: 4_000_000 })).toBe(500);
    expect(residentContextTokens(undefined)).toBeUndefined();
    expect(residentContextTokens({ samples: 0, tokens: 0, squaredTokens: 0 })).toBeUndefined();
  });

  it('models the resident context as U · L of the length-biased L, with a log-normal third moment', () => {
    // Equal lengths L: a uniform fraction of L, mean L / 2 and standard deviation L / √12.
    const equal = residentContext({ samples: 4, tokens: 4000, squaredTokens: 4_000_000 })!;
    expect(equal.mean).toBe(500);
    expect(equal.sd).toBeCloseTo(1000 / Math.sqrt(12), 9);
    // 1000, 2000, 3000: E[L] 2000, E[L²] 14e6 / 3, closure E[L³] = E[L²]³ / E[L]³, E[X²] = E[L³] / (3 E[L]).
    const m1 = 2000;
    const m2 = 14_000_000 / 3;
    const spread = residentContext(trained)!;
    expect(spread.mean).toBeCloseTo(m2 / (2 * m1), 9);
    expect(spread.sd).toBeCloseTo(Math.sqrt(m2 ** 3 / m1 ** 3 / (3 * m1) - (m2 / (2 * m1)) ** 2), 6);
    // A wider spread of lengths at the same mean: a larger mean and a larger deviation.
    const wider = residentContext({ samples: 2, tokens: 4000, squaredTokens: 1000 ** 2 + 3000 ** 2 })!;
    expect(wider.mean).toBeGreaterThan(equal.mean);
    expect(wider.sd / wider.mean).toBeGreaterThan(equal.sd / equal.mean);
    expect(residentContext(undefined)).toBeUndefined();
    expect(residentContext({ samples: 3, tokens: 0, squaredTokens: 0 })).toBeUndefined();
  });

  it('caps running samples at what each rank rolling out holds with one standard deviation of margin, at least one per rank', () => {
    // μ 1166.67, σ 869.6 tokens: a rank of 10 000 tokens holds n = 6.65 (n·μ + √n·σ = 10 000), 4 such ranks 26.
    expect(KV_CAP_MARGIN_SDS).toBe(1);
    expect(kvRunningCap({ kvCapacityTokens: 40_000, ranksRollingOut: 4, trainedContext: trained, maxContextTokens: 65_536 })).toBe(26);
    expect(kvRunningCap({ kvCapacityTokens: 10_000, ranksRollingOut: 1, trainedContext: trained, maxContextTokens: 65_536 })).toBe(6);
    expect(kvRunningCap({ kvCapacityTokens: 2_000, ranksRollingOut: 4, trainedContext: trained, maxContextTokens: 65_536 })).toBe(4);
    expect(kvRunningCap({ kvCapacityTokens: 0, ranksRollingOut: 0, trainedContext: trained, maxContextTokens: 65_536 })).toBe(0);
  });

  it('keeps the mean plus one standard deviation of a rank\'s resident contexts within its cache, and no more room than that', () => {
    const { mean, sd } = residentContext(trained)!;
    const fits = (n: number, capacity: number): boolean => n * mean + Math.sqrt(n) * sd <= capacity;
    for (const perRank of [3_000, 10_000, 65_536, 385_000]) {
      for (const ranks of [1, 4, 20]) {
        const cap = kvRunningCap({ kvCapacityTokens: perRank * ranks, ranksRollingOut: ranks, trainedContext: trained, maxContextTokens: 65_536 })!;
        // The cap over the ranks: each holds cap / ranks on average, within its cache with the margin.
        expect(fits(cap / ranks, perRank)).toBe(true);
        expect(fits((cap + 1) / ranks, perRank)).toBe(cap + 1 <= ranks);
      }
    }
    // The margin matters most where a rank holds few samples: below the mean-only fit, by less as n grows.
    const few = kvRunningCap({ kvCapacityTokens: 10_000, ranksRollingOut: 1, trainedContext: trained, maxContextTokens: 65_536 })!;
    const many = kvRunningCap({ kvCapacityTokens: 1_000_000, ranksRollingOut: 1, trainedContext: trained, maxContextTokens: 65_536 })!;
    expect(few / (10_000 / mean)).toBeLessThan(many / (1_000_000 / mean));
    expect(many).toBeLessThan(Math.floor(1_000_000 / mean));
  });

  it('counts every rolling sample as growing towards rollout.maxTokens before anything with known contexts was trained', () => {
    // M = 4096: μ = 2048, σ = 4096 / √12 = 1182.4; a rank of 10 000 tokens holds n = 3.76 (n·μ + √n·σ = 10 000), 4 such ranks 15.
    expect(residentContextBeforeTraining(4096)).toEqual({ mean: 2048, sd: 4096 / Math.sqrt(12) });
    expect(kvRunningCap({ kvCapacityTokens: 40_000, ranksRollingOut: 4, trainedContext: undefined, maxContextTokens: 4096 })).toBe(15);
    expect(kvRunningCap({ kvCapacityTokens: 10_000, ranksRollingOut: 1, trainedContext: { samples: 3, tokens: 0, squaredTokens: 0 }, maxContextTokens: 4096 })).toBe(3);
    // At least one per rank, as with trained contexts; the first trained batch replaces the bound.
    expect(kvRunningCap({ kvCapacityTokens: 8_000, ranksRollingOut: 4, trainedContext: undefined, maxContextTokens: 65_536 })).toBe(4);
    expect(kvRunningCap({ kvCapacityTokens: 40_000, ranksRollingOut: 4, trainedContext: trained, maxContextTokens: 4096 })).toBe(26);
    expectValidation(() => kvRunningCap({ kvCapacityTokens: 40_000, ranksRollingOut: 4, trainedContext: undefined, maxContextTokens: 0 }), 'VAL_INT_RANGE', 'KV cap: max context tokens');
  });

  it("sums the rolling ranks' capacities: each engine's report, at most the config's; the config's where an engine reports none", () => {
    const reported = new Map<number, number | null>([
      [0, 10_000],
      [1, 30_000],
      [2, null],
    ]);
    expect(rollingKvCapacity([0, 1], reported, undefined)).toBe(40_000);
    expect(rollingKvCapacity([0, 1], reported, 20_000)).toBe(30_000);
    expect(rollingKvCapacity([0, 1, 2], reported, 20_000)).toBe(50_000);
    // A rank that reports none (2) or has not reported (3): no cap unless the config gives one.
    expect(rollingKvCapacity([0, 2], reported, undefined)).toBeUndefined();
    expect(rollingKvCapacity([0, 3], reported, undefined)).toBeUndefined();
    expect(rollingKvCapacity([3], new Map(), 5_000)).toBe(5_000);
    expect(rollingKvCapacity([], reported, undefined)).toBe(0);
    expect(rankKvCapacity(undefined, undefined)).toBeUndefined();
  });

  it('reads the capacity of ranks that have not reported, unless the config gives one; a rank that reports none is not asked again', () => {
    const reported = new Map<number, number | null>([
      [0, 10_000],
      [2, null],
    ]);
    expect(ranksWithoutKvCapacity([0, 1, 2, 3], reported, undefined)).toEqual([1, 3]);
    expect(ranksWithoutKvCapacity([0, 1, 2, 3], reported, 20_000)).toEqual([]);
    expect(ranksWithoutKvCapacity([0, 2], reported, undefined)).toEqual([]);
  });

  it('is the lesser of the batch size, maxConcurrentSamples and the KV cap', () => {
    expect(maxRunningSamples(64, 128)).toBe(64);
    expect(maxRunningSamples(64, 128, 34)).toBe(34);
    expect(maxRunningSamples(64, 128, 100)).toBe(64);
    expect(maxRunningSamples(64, 20, 34)).toBe(20);
  });

  it("limits 'resume' admission and its steps, not 'drop'", () => {
    const base = { batchSize: 64, asyncRatio: 1, maxConcurrentSamples: 128, live: 30, running: 30, batchSealed: false };
    expect(admissionRoom({ ...base, policy: 'resume' })).toBe(34);
    expect(admissionRoom({ ...base, policy: 'resume', kvRunningCap: 34 })).toBe(4);
    expect(admissionRoom({ ...base, policy: 'resume', kvRunningCap: 20 })).toBe(0);
    expect(admissionRoom({ ...base, policy: 'drop', kvRunningCap: 20 })).toBe(98);
    // An eighth of the KV cap (32): admit again once 4 of the 32 running completed.
    expect(admissionPoint({ ...base, policy: 'resume', live: 32, running: 32, completed: 0, kvRunningCap: 32 })).toBe(4);
  });

  it('validates its inputs', () => {
    expectValidation(() => kvRunningCap({ kvCapacityTokens: 0, ranksRollingOut: 4, trainedContext: trained, maxContextTokens: 65_536 }), 'VAL_INT_RANGE', 'KV cap: KV capacity of the ranks rolling out');
    expectValidation(() => kvRunningCap({ kvCapacityTokens: 10, ranksRollingOut: -1, trainedContext: trained, maxContextTokens: 65_536 }), 'VAL_INT_RANGE', 'KV cap: ranks rolling out');
    expectValidation(() => rankKvCapacity(0, undefined), 'VAL_INT_RANGE', 'KV cap: KV capacity an engine reported');
    expectValidation(() => rankKvCapacity(1.5, 100), 'VAL_INT_RANGE', 'KV cap: KV capacity an engine reported');
    expectValidation(() => residentContextTokens({ samples: 3, tokens: 6000, squaredTokens: 1000 }), 'AST_POSTCONDITION', 'KV cap: Σ L²');
    expectValidation(() => admissionRoom({ batchSize: 4, asyncRatio: 1, maxConcurrentSamples: 8, live: 0, running: 0, batchSealed: false, policy: 'resume', kvRunningCap: -1 }), 'VAL_INT_RANGE', 'admission: KV cap');
  });
});

describe('admissionPoint', () => {
  const base = { batchSize: 64, asyncRatio: 1, maxConcurrentSamples: 128, live: 64, running: 64, completed: 0, batchSealed: false };

  it("'drop', and a sealed batch, admit nothing before the batch is ready", () => {
    expect(admissionPoint({ ...base, policy: 'drop' })).toBe(64);
    expect(admissionPoint({ ...base, policy: 'resume', batchSealed: true })).toBe(64);
  });

  it("'resume' admits again once an eighth of the running cap has completed", () => {
    expect(ADMISSION_STEPS_PER_CAP).toBe(8);
    expect(admissionPoint({ ...base, policy: 'resume' })).toBe(8);
    expect(admissionPoint({ ...base, policy: 'resume', live: 80, running: 64, completed: 16 })).toBe(24);
    // The staleness room left (3) is smaller than a step: admit it once 3 slots are free (61 + 3).
    expect(admissionPoint({ ...base, policy: 'resume', live: 125, running: 64, completed: 61 })).toBe(64);
    expect(admissionPoint({ ...base, policy: 'resume', batchSize: 80, live: 125, running: 64, completed: 61 })).toBe(62);
    // Never past the batch.
    expect(admissionPoint({ ...base, policy: 'resume', live: 120, running: 64, completed: 60 })).toBe(64);
  });

  it("'resume' waits for the batch when the staleness bound leaves no room (completed samples count until trained)", () => {
    expect(admissionPoint({ ...base, policy: 'resume', live: 128, running: 64, completed: 64 })).toBe(64);
  });

  it('validates its inputs', () => {
    expectValidation(() => admissionPoint({ ...base, policy: 'resume', completed: 65 }), 'VAL_INT_RANGE', 'admission point: completed samples');
  });
});

describe('version spans', () => {
  it('merge a run of one version and expand to one version per token', () => {
    let spans = appendSpan([], 0, 2);
    spans = appendSpan(spans, 0, 1);
    spans = appendSpan(spans, 1, 0);
    spans = appendSpan(spans, 2, 2);
    expect(spans).toEqual([
      { version: 0, tokens: 3 },
      { version: 2, tokens: 2 },
    ]);
    expect(expandSpans(spans)).toEqual([0, 0, 0, 2, 2]);
  });

  it('the hard lag limit keeps tokens at or under it, and refuses a token from the future', () => {
    expect(withinLagLimit(3, 5, 2)).toBe(true);
    expect(withinLagLimit(2, 5, 2)).toBe(false);
    expect(withinLagLimit(0, 5, undefined)).toBe(true);
    expectValidation(() => withinLagLimit(6, 5, 2), 'VAL_INT_RANGE', 'token version');
  });
});

describe('staleness figures', () => {
  it('lag of trained tokens: mean, nearest-rank p99 and max over tokens', () => {
    let histogram = addTokenLags({}, [{ version: 4, tokens: 98 }], 4);
    histogram = addTokenLags(histogram, [{ version: 3, tokens: 1 }, { version: 1, tokens: 1 }], 4);
    expect(histogram).toEqual({ 0: 98, 1: 1, 3: 1 });
    expect(lagSummary(histogram)).toEqual({ tokens: 100, mean: 0.04, p99: 1, max: 3 });
    expect(lagSummary({})).toEqual({ tokens: 0, mean: 0, p99: 0, max: 0 });
    expectValidation(() => addTokenLags({}, [{ version: 5, tokens: 1 }], 4), 'VAL_INT_RANGE', 'token lag');
  });

  it('KS distance between turn-count distributions', () => {
    const short = [1, 2, 3].reduce((h, v) => addCount(h, v), {});
    const long = [3, 4, 5].reduce((h, v) => addCount(h, v), {});
    expect(ksDistance(short, short)).toBe(0);
    expect(ksDistance(short, long)).toBeCloseTo(2 / 3);
    // Trained = admitted minus its longest third: the gap is at the tail.
    const admitted = [1, 2, 3, 4, 5, 6].reduce((h, v) => addCount(h, v), {});
    const trained = [1, 2, 3, 4].reduce((h, v) => addCount(h, v), {});
    expect(ksDistance(trained, admitted)).toBeCloseTo(1 / 3);
    expect(ksDistance({}, admitted)).toBe(0);
  });

  it('utilization over decided samples, in trajectories and tokens', () => {
    expect(sampleUtilization({ trained: 84, discarded: 16, trainedTokens: 700, decodedTokens: 1000 })).toEqual({ trajectories: 0.84, tokens: 0.7 });
    expect(sampleUtilization({ trained: 0, discarded: 0, trainedTokens: 0, decodedTokens: 0 })).toEqual({ trajectories: 1, tokens: 1 });
    expectValidation(() => sampleUtilization({ trained: 1, discarded: 0, trainedTokens: 2, decodedTokens: 1 }), 'AST_POSTCONDITION', 'utilization');
  });
});
