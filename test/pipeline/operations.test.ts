/**
 * Operating a live run: updates with bad payloads are rejected by their validators and leave the
 * run untouched; good ones take effect from the next iteration; pause / resume / stop.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliError, sendUpdate } from '../../src/cli/client';
import type { IterationResult, RunStatus } from '../../src/contract/types';
import { iterationWorkflowId } from '../../src/contract/naming';
import type { RunSummary } from '../../src/workflows/run';
import { setBatchSizeUpdate } from '../../src/workflows/signals';
import { smallConfig, startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';

describe('pipeline: operator updates (real Temporal)', () => {
  let env: PipelineEnv;
  beforeAll(async () => {
    env = await startPipelineEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('rejects bad updates, applies good ones, pauses, resumes and stops', async () => {
    const runId = 'operations';
    const context = env.context(smallConfig({ run: { id: runId, iterations: 50 } }));
    const workers = await env.startWorkers(context);
    try {
      const { spec, handle } = await env.startRun(context);
      const before = await handle.query<RunStatus>('status');

      // Bad payloads: rejected with the rule, nothing changes.
      await expect(sendUpdate(env.client, runId, { name: 'setBatchSize', batchSize: 0 })).rejects.toThrow(CliError);
      await expect(sendUpdate(env.client, runId, { name: 'setBatchSize', batchSize: spec.maxConcurrentSamples + 1 })).rejects.toThrow(/VAL_INT_RANGE/);
      await expect(handle.executeUpdate(setBatchSizeUpdate, { args: [{ batchSize: 4, extra: true } as unknown as { batchSize: number }] })).rejects.toThrow();
      await expect(sendUpdate(env.client, runId, { name: 'setShrinkSet', ranks: [2, 3] })).rejects.toThrow(/ranks overlapping the train group/);
      await expect(sendUpdate(env.client, runId, { name: 'setShrinkSet', ranks: [0, 1, 2, 3] })).rejects.toThrow(/keep rolling out/);
      await expect(sendUpdate(env.client, runId, { name: 'resume' })).rejects.toThrow(/not paused/);
      // A refused argument exits 2, like any bad argument.
      const refused = await sendUpdate(env.client, runId, { name: 'setBatchSize', batchSize: spec.maxConcurrentSamples + 1 }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(CliError);
      expect((refused as CliError).exitCode).toBe(2);
      expect((refused as CliError).message).toMatch(/batchSize: .* \[VAL_INT_RANGE\]/);
      const unchanged = await handle.query<RunStatus>('status');
      expect(unchanged.batchSize).toBe(before.batchSize);
      expect(unchanged.shrinkOverride).toBeUndefined();

      // Good ones take effect from the next iteration.
      expect(await sendUpdate(env.client, runId, { name: 'setBatchSize', batchSize: 4 })).toBe(`set-batch-size accepted: run '${runId}' trains batches of 4 from its next iteration on`);
      expect(await sendUpdate(env.client, runId, { name: 'setShrinkSet', ranks: [0, 1, 2] })).toBe(`set-shrink-set accepted: run '${runId}' releases ranks 0,1,2 from its next iteration on`);
      const changed = await handle.query<RunStatus>('status');
      expect(changed.batchSize).toBe(4);
      expect(changed.shrinkOverride).toEqual([0, 1, 2]);

      await sendUpdate(env.client, runId, { name: 'pause' });
      let status: RunStatus;
      for (;;) {
        status = await handle.query<RunStatus>('status');
        if (status.paused) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const pausedAt = status.iteration;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect((await handle.query<RunStatus>('status')).iteration).toBe(pausedAt);

      await sendUpdate(env.client, runId, { name: 'resume' });
      for (;;) {
        status = await handle.query<RunStatus>('status');
        if (status.iteration > pausedAt) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await sendUpdate(env.client, runId, { name: 'stop' });
      // A repeated stop is what was asked already: said, not refused, whether the run is still
      // ending its iteration or has ended; a pause now is refused.
      expect(await sendUpdate(env.client, runId, { name: 'stop' })).toMatch(new RegExp(`^run '${runId}' (is already stopping \\(a stop was accepted before\\)|is finished \\(completed\\): nothing to stop)`));
      await expect(sendUpdate(env.client, runId, { name: 'pause' })).rejects.toThrow(/pause rejected: .*already stopping|is finished \(completed\): nothing to pause/);
      const summary = (await handle.result()) as RunSummary;
      expect(summary.stopped).toBe(true);
      expect(summary.iterations).toBeLessThan(50);
      // The finished run: an update says it is finished, not that it does not exist; a stop is no error.
      await expect(sendUpdate(env.client, runId, { name: 'pause' })).rejects.toThrow(/run 'operations' is finished \(completed\): nothing to pause/);
      expect(await sendUpdate(env.client, runId, { name: 'stop' })).toMatch(/^run 'operations' is finished \(completed\): nothing to stop/);
      await expect(sendUpdate(env.client, 'no-such-run', { name: 'stop' })).rejects.toThrow(/no run 'no-such-run'/);

      // The iteration after the updates trained a batch of 4 with ranks 0-2 released.
      const after = (await env.client.workflow.getHandle(iterationWorkflowId(runId, pausedAt)).result()) as IterationResult;
      expect(after.stats.batchSamples).toBe(4);
      const audit = await env.store(context).audit();
      expect(audit.violations).toEqual([]);
      expect(audit.batched).toBe(summary.samples.trained);
    } finally {
      await workers.stop();
    }
  });
});
