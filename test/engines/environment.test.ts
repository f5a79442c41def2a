import { describe, expect, it } from 'vitest';
import { SimAbortError } from '../../src/engines/simulated/clock';
import { SimEnvironment } from '../../src/engines/simulated/environment';
import { ValidationError } from '../../src/validation/patterns';
import { clock, constantWorkload } from './helpers';

describe('SimEnvironment', () => {
  const workload = constantWorkload(100, { successRate: 1 });

  it('runs a trajectory for turnsFor(sampleId) turns and rewards it at the end', async () => {
    const env = new SimEnvironment({ workload, clock: clock(0.0001) });
    const sampleId = 3;
    expect(await env.reset(sampleId)).toEqual({ promptTokens: 2000 });
    const turns = workload.turnsFor(sampleId);
    for (let turn = 0; turn < turns - 1; turn++) {
      const step = await env.step(sampleId, turn, 100);
      expect(step.done).toBe(false);
      expect(step.reward).toBeUndefined();
      expect(step.observationTokens).toBe(workload.observationTokens(sampleId, turn));
    }
    expect(await env.step(sampleId, turns - 1, 100)).toMatchObject({ done: true, reward: 1 });
    await expect(env.step(sampleId, turns, 100)).rejects.toThrow(ValidationError);
  });

  it('is stateless: another instance (another rank or process) continues a migrated sample identically', async () => {
    const a = new SimEnvironment({ workload, clock: clock(0.0001) });
    const b = new SimEnvironment({ workload, clock: clock(0.0001) });
    expect(await b.step(11, 2, 50)).toEqual(await a.step(11, 2, 50));
  });

  it('sleeps the simulated step latency and rejects with SimAbortError on abort', async () => {
    const env = new SimEnvironment({ workload, clock: clock(0.01) });
    const start = performance.now();
    await env.step(5, 0, 10);
    expect(performance.now() - start).toBeGreaterThanOrEqual(workload.envStepMs(5, 0) * 0.01 - 2);
    const controller = new AbortController();
    const slow = new SimEnvironment({ workload, clock: clock(1) });
    const pending = slow.step(5, 0, 10, controller.signal);
    controller.abort();
    await expect(pending).rejects.toThrow(SimAbortError);
  });
});
