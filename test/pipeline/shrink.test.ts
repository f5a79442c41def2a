/**
 * Shrink mid-turn: long turns guarantee generation is in flight on the released ranks when the
 * batch threshold is reached. Their samples are checkpointed with the tokens generated so far,
 * moved to the ranks that keep rolling out, and resume from that prefix. Checks exact-once
 * accounting and that no token of any turn was lost or generated twice across the move.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkloadModel } from '../../src/engines/simulated/workload';
import { iterationWorkflowId } from '../../src/contract/naming';
import type { IterationResult } from '../../src/contract/types';
import type { RunSummary } from '../../src/workflows/run';
import { smallConfig, startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';

describe('pipeline: shrink moves in-flight samples exactly once (real Temporal)', () => {
  let env: PipelineEnv;
  beforeAll(async () => {
    env = await startPipelineEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('migrates unfinished samples off the released ranks with their partial turns kept', async () => {
    const runId = 'shrink-mid-turn';
    const config = smallConfig({
      run: { id: runId, iterations: 2 },
      maxTokens: 1_000_000,
      simulation: {
        // Slow enough that a turn (~0.5-1.5 s real) outlasts cancellation delivery (a heartbeat, ~0.2-0.4 s).
        timeScale: 0.03,
        workload: {
          turns: { median: 3, p90: 6 },
          // Long generations: most of a turn's time is decode, so shrink catches turns mid-way.
          completionTokensPerTurn: { median: 3000, p90: 9000 },
          envStepMs: { median: 100, p90: 300 },
        },
      },
    });
    const context = env.context(config);
    const workers = await env.startWorkers(context);
    try {
      const { spec, handle } = await env.startRun(context);
      const summary = (await handle.result()) as RunSummary;
      expect(summary.iterations).toBe(2);

      const results = await Promise.all(
        [0, 1].map((iteration) => env.client.workflow.getHandle(iterationWorkflowId(runId, iteration)).result() as Promise<IterationResult>),
      );
      const migrated = results.reduce((sum, result) => sum + result.stats.migrated, 0);
      expect(migrated).toBeGreaterThan(0);

      const store = env.store(context);
      const audit = await store.audit();
      expect(audit.violations).toEqual([]);
      expect(audit.batched).toBe(2 * spec.batchSize);

      // Every finished turn has exactly the tokens the workload gives it, wherever its parts ran.
      const workload = WorkloadModel.fromParams(context.parsed.config.simulation.workload, {
        maxTurns: context.parsed.config.maxTurns,
        maxTokens: context.parsed.config.maxTokens,
      });
      const released = new Set(context.parsed.layout.shrinkRanks);
      const records = await store.readSamples(await store.listSampleIds());
      let movedSamples = 0;
      for (const record of records) {
        for (const turn of record.turns) {
          expect(turn.generatedTokens, `sample ${record.id} turn ${turn.turn}`).toBe(workload.completionTokens(record.id, turn.turn));
        }
        const ranks = new Set(record.turns.map((turn) => turn.rank));
        if ([...ranks].some((rank) => released.has(rank)) && [...ranks].some((rank) => !released.has(rank))) movedSamples += 1;
        if (record.partial !== undefined) {
          // A checkpointed partial turn never exceeds the turn's full generation.
          expect(record.partial.tokens).toBeLessThanOrEqual(workload.completionTokens(record.id, record.partial.turn));
        }
      }
      expect(movedSamples).toBeGreaterThan(0);
      expect(records.length).toBe(summary.samples.admitted);
    } finally {
      await workers.stop();
    }
  });
});
