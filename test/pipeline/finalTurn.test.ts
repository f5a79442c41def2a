/**
 * A worker that died between checkpointing a trajectory's last turn and marking the sample
 * completed (found by the soak: the retried shard asked the environment for a turn past the end).
 * Workers of this build write both at once (completeSample); the store is left exactly as such a
 * crash of an earlier build's worker leaves it, and the next shard must complete the sample with
 * the reward of its final turn, not run another turn. Real Temporal, real workers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunStatus } from '../../src/contract/types';
import type { RunSummary } from '../../src/workflows/run';
import { smallConfig, startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';

describe('a final turn checkpointed before a crash', () => {
  let env: PipelineEnv;
  beforeAll(async () => {
    env = await startPipelineEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('completes the sample with its reward instead of running a turn past the end', { timeout: 90_000 }, async () => {
    const base = smallConfig();
    const simulation = base.simulation as { workload: Record<string, unknown> };
    // Every trajectory is one turn long: a second turn is out of range for the environment.
    const context = env.context(
      smallConfig({ run: { id: 'final-turn', iterations: 1 }, simulation: { ...simulation, workload: { ...simulation.workload, turns: { median: 1, p90: 1 } } } }),
    );
    const store = env.store(context);
    await store.createSamples([
      {
        id: 0,
        startVersion: 0,
        promptTokens: 100,
        turns: [{ turn: 0, generatedTokens: 50, observationTokens: 20, weightVersion: 0, rank: 0, final: { reward: 0.75 } }],
        status: 'running',
        startedAtMs: Date.now(),
      },
    ]);
    const workers = await env.startWorkers(context);
    try {
      const { handle } = await env.startRun(context);
      const summary = (await Promise.race([
        handle.result(),
        new Promise((_, reject) =>
          setTimeout(() => {
            handle.query<RunStatus>('status').then(
              (status) => reject(new Error(`run did not finish in 60 s: ${status.lastError ?? status.phase}`)),
              reject,
            );
          }, 60_000),
        ),
      ])) as RunSummary;
      expect(summary.iterations).toBe(1);
      const [record] = await store.readSamples([0]);
      expect(record!.status).toBe('completed');
      expect(record!.turns).toHaveLength(1);
      expect(record!.reward).toBe(0.75);
      expect((await store.audit()).violations).toEqual([]);
    } finally {
      await workers.stop();
    }
  });
});
