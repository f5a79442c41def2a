import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SimAbortError } from '../../src/engines/simulated/clock';
import { EngineStateError } from '../../src/engines/simulated/errors';
import { SimRolloutEngine } from '../../src/engines/simulated/rolloutEngine';
import { SimTrainer, type SimTrainerOptions } from '../../src/engines/simulated/trainer';
import type { TrainBatch } from '../../src/engines/types';
import { trainStepResultSchema } from '../../src/engines/types';
import { clock, constantWorkload, cost, memory, tempDir } from './helpers';

function trainer(options: Partial<SimTrainerOptions> = {}): SimTrainer {
  return new SimTrainer({ node: 0, gpus: [0, 1], totalTrainGpus: 4, cost: cost(), clock: clock(0.001), memory: memory(), ...options });
}

function batch(overrides: Partial<TrainBatch> = {}): TrainBatch {
  return { iteration: 0, fromVersion: 0, sampleIds: [1, 2, 3], totalTokens: 64_000, ...overrides };
}

describe('SimTrainer', () => {
  it('onload/offload are idempotent and move memory', async () => {
    const mem = memory();
    const t = trainer({ memory: mem });
    expect(await t.status()).toEqual({ onloaded: false, weightVersion: 0 });
    await t.onload();
    await t.onload();
    expect(mem.usedGiB(1)).toBe(60);
    await t.offload();
    await t.offload();
    expect(mem.usedGiB(1)).toBe(0);
  });

  it('trains from the version it holds, after onload, for the cost-model time', async () => {
    const t = trainer({ clock: clock(0.01) });
    await expect(t.trainStep(batch())).rejects.toThrow(/not onloaded/);
    await t.onload();
    // 2000 ms fixed + 64000 tokens / (4000 tok/s × 4 GPUs) = 6000 ms simulated = 60 ms real.
    expect(t.stepSimMs(64_000)).toBe(6000);
    const start = performance.now();
    const result = trainStepResultSchema.parse(await t.trainStep(batch()));
    expect(performance.now() - start).toBeGreaterThanOrEqual(55);
    expect(result.newVersion).toBe(1);
    expect(result.trainedSamples).toBe(3);
    expect(result.loss).toBeGreaterThan(0);
    expect(result.loss).toBeLessThan(2);
    await expect(t.trainStep(batch({ iteration: 1, fromVersion: 0 }))).rejects.toThrow(/holds v1, not v0/);
    await expect(t.trainStep(batch({ iteration: 1, fromVersion: 1, sampleIds: [] }))).rejects.toThrow(/VAL_NON_EMPTY/);
  });

  it('returns the recorded result when a completed step is retried (also after a restart)', async () => {
    const statePath = path.join(tempDir('trainer-state'), 'node-0.json');
    const first = trainer({ statePath });
    await first.onload();
    const result = await first.trainStep(batch({ iteration: 4, fromVersion: 0 }));
    const restarted = trainer({ statePath, memory: memory() });
    expect(await restarted.status()).toEqual({ onloaded: true, weightVersion: 1 });
    expect(await restarted.trainStep(batch({ iteration: 4, fromVersion: 0 }))).toEqual(result);
    expect((await restarted.trainStep(batch({ iteration: 5, fromVersion: 1 }))).newVersion).toBe(2);
  });

  it('an aborted step rejects and leaves the version unchanged; transitions do not overlap', async () => {
    const controller = new AbortController();
    const slowStep = trainer({ clock: clock(0.05) });
    await slowStep.onload();
    const pending = slowStep.trainStep(batch(), controller.signal);
    await expect(slowStep.offload()).rejects.toThrow(EngineStateError);
    controller.abort();
    await expect(pending).rejects.toThrow(SimAbortError);
    expect((await slowStep.status()).weightVersion).toBe(0);
    // The step can be run again after the abort.
    expect((await slowStep.trainStep(batch({ totalTokens: 0 }))).newVersion).toBe(1);
  });

  it('exports weights atomically that a rollout engine then loads', async () => {
    const dir = tempDir('export');
    const mem = memory();
    const simClock = clock(0.001);
    const t = trainer({ memory: mem, clock: simClock, gpus: [2, 3] });
    const e = new SimRolloutEngine({ rank: 0, gpus: [0, 1], cost: cost(), workload: constantWorkload(10), clock: simClock, memory: mem });
    await expect(t.exportWeights(1, dir)).rejects.toThrow(/holds v0/);
    await t.onload();
    await t.trainStep(batch({ iteration: 7 }));
    const { path: weightsPath } = await t.exportWeights(1, dir);
    expect(weightsPath).toBe(path.join(dir, 'weights-v1.json'));
    expect(JSON.parse(fs.readFileSync(weightsPath, 'utf8'))).toMatchObject({ version: 1, iteration: 7 });
    expect(fs.readdirSync(dir)).toEqual(['weights-v1.json']); // no temporary file left behind
    await e.updateWeights(1, weightsPath);
    expect((await e.status()).weightVersion).toBe(1);
  });
});
