import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { EngineStateError } from '../../src/engines/simulated/errors';
import { SimulatedOutOfMemoryError } from '../../src/engines/simulated/gpuMemory';
import { SimRolloutEngine, type SimRolloutEngineOptions, type SimTurnTiming } from '../../src/engines/simulated/rolloutEngine';
import { SimTrainer } from '../../src/engines/simulated/trainer';
import type { CostModel, TurnRequest } from '../../src/engines/types';
import { ValidationError } from '../../src/validation/patterns';
import { clock, constantWorkload, cost, delay, memory, tempDir } from './helpers';

/** c = 1 decodes at 17000/(1+16) = 1000 tokens/s: easy numbers. */
const FAST_DECODE: Partial<CostModel> = { decodeTokensPerSecondPerRank: 17_000, decodeHalfSaturationConcurrency: 16 };

interface EngineSetup extends Partial<SimRolloutEngineOptions> {
  tokensPerTurn?: number;
  timeScale?: number;
  costOverrides?: Partial<CostModel>;
}

function engine(setup: EngineSetup = {}) {
  const { tokensPerTurn = 100, timeScale = 0.001, costOverrides = {}, ...options } = setup;
  const timings: SimTurnTiming[] = [];
  const e = new SimRolloutEngine({
    rank: 0,
    gpus: [0, 1],
    cost: cost({ ...FAST_DECODE, prefillMsPerThousandTokens: 0, ...costOverrides }),
    workload: constantWorkload(tokensPerTurn),
    clock: clock(timeScale),
    memory: memory(),
    onTurn: (t) => timings.push(t),
    ...options,
  });
  return { engine: e, timings };
}

function request(overrides: Partial<TurnRequest> = {}): TurnRequest {
  return { requestId: 'r1', sampleId: 1, turn: 0, contextTokens: 2000, prefixTokens: 0, maxNewTokens: 10_000, ...overrides };
}

describe('SimRolloutEngine generate', () => {
  it('generates the workload turn, honours prefixTokens and maxNewTokens', async () => {
    const { engine: e } = engine({ tokensPerTurn: 100 });
    expect(await e.generate(request())).toEqual({ requestId: 'r1', outputTokens: 100, finishReason: 'stop', weightVersion: 0 });
    expect(await e.generate(request({ requestId: 'r2', prefixTokens: 30 }))).toMatchObject({ outputTokens: 70, finishReason: 'stop' });
    expect(await e.generate(request({ requestId: 'r3', maxNewTokens: 40 }))).toMatchObject({ outputTokens: 40, finishReason: 'length' });
    expect(await e.generate(request({ requestId: 'r4', prefixTokens: 150 }))).toMatchObject({ outputTokens: 0, finishReason: 'stop' });
    await expect(e.generate(request({ requestId: 'r5', contextTokens: -1 }))).rejects.toThrow(ValidationError);
    expect((await e.status()).runningRequests).toBe(0);
  });

  it('takes time proportional to the cost model (decode, and the concurrency slowdown)', async () => {
    // Fake timers and a fake performance clock: the engine's timers fire exactly when planned, so
    // the figures below are the model's, whatever the machine's load.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      const timeScale = 0.05; // 1 simulated s = 50 real ms
      const TIMER_MS = 1; // timers fire on whole milliseconds
      const wall = async (e: SimRolloutEngine, requests: TurnRequest[]): Promise<number> => {
        const start = performance.now();
        const pending = Promise.all(requests.map((r) => e.generate(r)));
        await vi.runAllTimersAsync();
        await pending;
        return performance.now() - start;
      };
      const short = engine({ tokensPerTurn: 1000, timeScale });
      const long = engine({ tokensPerTurn: 2000, timeScale });
      expect(Math.abs((await wall(short.engine, [request()])) - 50)).toBeLessThanOrEqual(TIMER_MS); // 1000 tokens at 1000 tok/s: 1 s sim, 50 ms real
      expect(Math.abs((await wall(long.engine, [request()])) - 100)).toBeLessThanOrEqual(TIMER_MS); // 2 s sim, 100 ms real
      expect(short.timings[0]?.decodeSimMs).toBeCloseTo(1000, -1);
      expect(long.timings[0]?.decodeSimMs).toBeCloseTo(2000, -1);

      // 8 at once: each decodes at 17000/(8+16) tok/s, so 24/17 slower than alone.
      const batch = engine({ tokensPerTurn: 1000, timeScale });
      const batchWall = await wall(batch.engine, Array.from({ length: 8 }, (_, i) => request({ requestId: `b${i}`, sampleId: i })));
      expect(Math.abs(batchWall - (50 * 24) / 17)).toBeLessThanOrEqual(TIMER_MS);
      for (const t of batch.timings) expect(t.decodeSimMs).toBeCloseTo((1000 * 24) / 17, -1);
      expect(Math.max(...batch.timings.map((t) => t.concurrencyAtStart))).toBe(8);
    } finally {
      vi.useRealTimers();
    }
  });

  it('abort via signal resolves with the partial output', async () => {
    // 10 s simulated decode = 500 ms real; abort after ~50 ms.
    const { engine: e, timings } = engine({ tokensPerTurn: 10_000, timeScale: 0.05 });
    const controller = new AbortController();
    const pending = e.generate(request(), controller.signal);
    expect((await e.status()).runningRequests).toBe(1);
    await delay(50);
    controller.abort();
    const result = await pending;
    expect(result.finishReason).toBe('abort');
    expect(result.outputTokens).toBeGreaterThan(0);
    expect(result.outputTokens).toBeLessThan(10_000);
    expect(timings[0]?.outputTokens).toBe(result.outputTokens);
    expect((await e.status()).runningRequests).toBe(0);

    const aborted = new AbortController();
    aborted.abort();
    expect(await e.generate(request({ requestId: 'r2' }), aborted.signal)).toMatchObject({ outputTokens: 0, finishReason: 'abort' });
  });

  it('abortAll resolves every running request with finishReason abort', async () => {
    const { engine: e } = engine({ tokensPerTurn: 10_000, timeScale: 0.05 });
    const pending = [0, 1, 2].map((i) => e.generate(request({ requestId: `a${i}`, sampleId: i })));
    await delay(40);
    await e.abortAll();
    expect((await e.status()).runningRequests).toBe(0);
    for (const result of await Promise.all(pending)) {
      expect(result.finishReason).toBe('abort');
      expect(result.outputTokens).toBeGreaterThan(0);
      expect(result.outputTokens).toBeLessThan(10_000);
    }
  });

  it('refuses a duplicate running requestId', async () => {
    const { engine: e } = engine({ tokensPerTurn: 10_000, timeScale: 0.01 });
    const first = e.generate(request());
    await expect(e.generate(request())).rejects.toThrow(/already running/);
    await e.abortAll();
    await first;
  });
});

describe('SimRolloutEngine prefix cache', () => {
  it('a migrated sample pays full prefill; a cached one only the new tokens', async () => {
    const mem = memory();
    const shared = { cost: cost({ ...FAST_DECODE, prefillMsPerThousandTokens: 40 }), workload: constantWorkload(100), clock: clock(0.001), memory: mem };
    const timings: SimTurnTiming[] = [];
    const home = new SimRolloutEngine({ rank: 0, gpus: [0, 1], ...shared, onTurn: (t) => timings.push(t) });
    const other = new SimRolloutEngine({ rank: 1, gpus: [2, 3], ...shared, onTurn: (t) => timings.push(t) });

    await home.generate(request({ requestId: 't0', contextTokens: 2000 }));
    // Next turn: context = 2000 + 100 generated + 500 observation.
    const next = request({ turn: 1, contextTokens: 2600 });
    await home.generate({ ...next, requestId: 'cached' });
    await other.generate({ ...next, requestId: 'migrated' });
    const [first, cached, migrated] = timings;
    expect(first?.prefillSimMs).toBeCloseTo(80, 9); // 2000 tokens × 40 ms / 1000
    expect(cached?.cachedTokens).toBe(2100);
    expect(cached?.prefillSimMs).toBeCloseTo(20, 9); // only the 500 observation tokens
    expect(migrated?.cachedTokens).toBe(0);
    expect(migrated?.prefillSimMs).toBeCloseTo(104, 9); // all 2600 tokens
    expect((migrated?.prefillSimMs ?? 0) + (migrated?.decodeSimMs ?? 0)).toBeGreaterThan((cached?.prefillSimMs ?? 0) + (cached?.decodeSimMs ?? 0));
  });

  it('releasing the KV cache flushes the prefix cache', async () => {
    const { engine: e, timings } = engine({ costOverrides: { prefillMsPerThousandTokens: 40 } });
    await e.generate(request({ requestId: 'a' }));
    await e.releaseMemory(['kv_cache']);
    await e.resumeMemory(['kv_cache']);
    await e.generate(request({ requestId: 'b', turn: 1, contextTokens: 2100 }));
    expect(timings[1]?.cachedTokens).toBe(0);
  });
});

describe('SimRolloutEngine memory', () => {
  it('a trainer cannot onload on GPUs the engine holds; it can after releaseMemory', async () => {
    const mem = memory([0, 1, 2, 3]);
    const c = cost();
    const simClock = clock(0.001);
    const e = new SimRolloutEngine({ rank: 0, gpus: [0, 1], cost: c, workload: constantWorkload(10), clock: simClock, memory: mem });
    const trainer = new SimTrainer({ node: 0, gpus: [0, 1], totalTrainGpus: 2, cost: c, clock: simClock, memory: mem });

    const err = await trainer.onload().catch((x: unknown) => x);
    expect(err).toBeInstanceOf(SimulatedOutOfMemoryError);
    expect((err as Error).message).toMatch(/GPU 0: trainer node 0 requested 60 GiB but only 10 of 80 GiB are free; held by: rollout rank 0 weights 30 GiB, rollout rank 0 kv_cache 40 GiB/);

    // KV cache alone is not enough: the weights still take 30 GiB.
    await e.releaseMemory(['kv_cache']);
    await expect(trainer.onload()).rejects.toThrow(SimulatedOutOfMemoryError);
    await e.releaseMemory(['weights', 'kv_cache']);
    await trainer.onload();
    expect((await trainer.status()).onloaded).toBe(true);

    // Expand before the trainer offloaded: the engine's resume must fail the same way.
    await expect(e.resumeMemory(['weights'])).rejects.toThrow(/GPU 0: rollout rank 0 weights requested 30 GiB but only 20 of 80 GiB are free; held by: trainer node 0 60 GiB/);
    await trainer.offload();
    await e.resumeMemory(['weights', 'kv_cache']);
    expect((await e.status()).resident).toEqual(['weights', 'kv_cache']);
  });

  it('release and resume are idempotent; generate needs both tags resident', async () => {
    const mem = memory();
    const { engine: e } = engine({ memory: mem });
    await e.releaseMemory(['weights', 'kv_cache']);
    await e.releaseMemory(['kv_cache', 'weights']); // the strict ledger would throw on a double free
    expect(mem.usedGiB(0)).toBe(0);
    await expect(e.generate(request())).rejects.toThrow(/weights and kv_cache not resident/);
    await e.resumeMemory(['weights']);
    await expect(e.generate(request())).rejects.toThrow(EngineStateError);
    await e.resumeMemory(['weights', 'kv_cache']);
    await e.resumeMemory(['kv_cache']);
    expect(mem.usedGiB(1)).toBe(70);
    expect((await e.generate(request())).finishReason).toBe('stop');
    await expect(e.releaseMemory(['gpu_cache' as never])).rejects.toThrow(/unknown memory tag/);
  });

  it('refuses to release memory under running requests, and to generate during a transition', async () => {
    const { engine: e } = engine({ tokensPerTurn: 10_000, timeScale: 0.01 });
    const running = e.generate(request());
    await expect(e.releaseMemory(['kv_cache'])).rejects.toThrow(/releaseMemory\(\[kv_cache\]\) with 1 running request\(s\): abort them first/);
    await expect(e.releaseMemory(['weights'])).rejects.toThrow(EngineStateError);
    await e.abortAll();
    expect((await running).finishReason).toBe('abort');

    const release = e.releaseMemory(['kv_cache']);
    // The same transition joins; a different one or a generate meanwhile is refused.
    expect(e.releaseMemory(['kv_cache'])).toBe(release);
    await expect(e.resumeMemory(['kv_cache'])).rejects.toThrow(/resumeMemory\(\[kv_cache\]\) called while releaseMemory\(\[kv_cache\]\) is in progress/);
    await expect(e.generate(request({ requestId: 'late' }))).rejects.toThrow(/in progress/);
    await release;
  });
});

describe('SimRolloutEngine state persistence', () => {
  it('a re-created engine (new worker process, fresh ledger) keeps version and residency', async () => {
    const dir = tempDir('engine-state');
    const statePath = path.join(dir, 'rank-0.json');
    const weights = path.join(dir, 'weights-v3.json');
    fs.writeFileSync(weights, JSON.stringify({ version: 3 }));
    const first = engine({ statePath }).engine;
    await first.updateWeights(3, weights);
    await first.releaseMemory(['weights', 'kv_cache']);
    expect(JSON.parse(fs.readFileSync(statePath, 'utf8'))).toEqual({ weightVersion: 3, resident: [] });

    const freshLedger = memory();
    const restarted = engine({ statePath, memory: freshLedger }).engine;
    expect(await restarted.status()).toEqual({ weightVersion: 3, resident: [], runningRequests: 0 });
    await restarted.releaseMemory(['weights', 'kv_cache']); // still a no-op after the restart
    await restarted.resumeMemory(['weights', 'kv_cache']);
    expect(freshLedger.usedGiB(0)).toBe(70);

    // Re-created in the same process: the ledger already shows the memory, nothing is allocated twice.
    const again = engine({ statePath, memory: freshLedger }).engine;
    expect((await again.status()).resident).toEqual(['weights', 'kv_cache']);
    expect(freshLedger.usedGiB(0)).toBe(70);
    // Re-created in a new process while a trainer took the GPUs: the memory conflict surfaces at once.
    const taken = memory();
    taken.allocate('trainer node 0', [0, 1], 60);
    expect(() => engine({ statePath, memory: taken })).toThrow(SimulatedOutOfMemoryError);
  });

  it('a corrupt state file is an error naming the file', () => {
    const statePath = path.join(tempDir('engine-state'), 'rank-0.json');
    fs.writeFileSync(statePath, JSON.stringify({ weightVersion: -1, resident: [] }));
    expect(() => engine({ statePath })).toThrow(new RegExp(`state file ${statePath} is invalid: weightVersion`));
    fs.writeFileSync(statePath, '{');
    expect(() => engine({ statePath })).toThrow(/is not valid JSON/);
  });
});

describe('SimRolloutEngine updateWeights', () => {
  const dir = tempDir('weights');
  const file = (version: number, content: unknown = { version }): string => {
    const p = path.join(dir, `w-${version}-${Math.random().toString(36).slice(2)}.json`);
    fs.writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
    return p;
  };

  it('loads a newer version, is idempotent for the same one, refuses a lower one', async () => {
    const { engine: e } = engine();
    await e.updateWeights(2, file(2));
    expect((await e.status()).weightVersion).toBe(2);
    expect((await e.generate(request())).weightVersion).toBe(2);
    await e.updateWeights(2, path.join(dir, 'does-not-matter.json'));
    await expect(e.updateWeights(1, file(1))).rejects.toThrow(/updateWeights\(v1\): refusing to go back from v2/);
  });

  it('checks the file, the residency and the running requests', async () => {
    const { engine: e } = engine({ tokensPerTurn: 10_000, timeScale: 0.01 });
    await expect(e.updateWeights(1, path.join(dir, 'missing.json'))).rejects.toThrow(/cannot read weights file .*missing\.json/);
    await expect(e.updateWeights(1, file(2))).rejects.toThrow(/holds v2, not v1/);
    await expect(e.updateWeights(1, file(1, 'not json'))).rejects.toThrow(/is not valid JSON/);
    await expect(e.updateWeights(1, file(1, { step: 1 }))).rejects.toThrow(/no valid "version" field/);
    await expect(e.updateWeights(-1, file(1))).rejects.toThrow(ValidationError);

    const running = e.generate(request());
    await expect(e.updateWeights(1, file(1))).rejects.toThrow(/1 running request\(s\): stop generation first/);
    await e.abortAll();
    await running;

    await e.releaseMemory(['weights']);
    await expect(e.updateWeights(1, file(1))).rejects.toThrow(/weights are not resident/);
    await e.resumeMemory(['weights']);
    await e.updateWeights(1, file(1));
    expect((await e.status()).weightVersion).toBe(1);
  });
});
