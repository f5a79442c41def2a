/**
 * Whole iterations of every strategy through the real pipeline: a real Temporal dev server,
 * the real workers and activities, simulated engines, the file-system store. Checks the exact-
 * once accounting of every sample (ledger counters against the store's own audit).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iterationWorkflowId } from '../../src/contract/naming';
import type { RunStatus } from '../../src/contract/types';
import type { RunSummary } from '../../src/workflows/run';
import { localActivityTypes, STORE_RECOVERY } from '../helpers/historyEvents';
import { smallConfig, startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';

describe('pipeline: whole iterations per strategy (real Temporal)', () => {
  let env: PipelineEnv;
  beforeAll(async () => {
    env = await startPipelineEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  const cases: { strategy: string; overrides: Record<string, unknown> }[] = [
    { strategy: 'multiplexed', overrides: {} },
    { strategy: 'colocated', overrides: { strategy: 'colocated', train: { gpus: 'all' }, asyncRatio: 0 } },
    { strategy: 'disaggregated', overrides: { strategy: 'disaggregated', rollout: { gpus: [0, 1, 2] }, train: { gpus: [3] } } },
  ];

  for (const { strategy, overrides } of cases) {
    it(`${strategy}: runs 2 iterations, every sample in exactly one batch or accounted for`, async () => {
      const context = env.context(smallConfig({ ...overrides, run: { id: `strategy-${strategy}`, iterations: 2 } }));
      const workers = await env.startWorkers(context);
      try {
        const { spec, handle } = await env.startRun(context);
        const summary = (await handle.result()) as RunSummary;
        expect(summary.iterations).toBe(2);
        expect(summary.version).toBe(2);
        expect(summary.samples.trained).toBe(2 * spec.batchSize);

        const status = await handle.query<RunStatus>('status');
        expect(status.phase).toBe('done');

        const store = env.store(context);
        const audit = await store.audit();
        expect(audit.violations).toEqual([]);
        expect(audit.batches).toBe(2);
        expect(audit.batched).toBe(2 * spec.batchSize);
        for (const iteration of [0, 1]) {
          const batch = await store.readBatch(iteration);
          expect(batch.sampleIds).toHaveLength(spec.batchSize);
        }
        // Conservation: what the workflow admitted is exactly what the store holds.
        const dropped = Object.values(summary.samples.dropped).reduce((a, b) => a + b, 0);
        const live = summary.samples.running + summary.samples.completedWaiting + summary.samples.waiting;
        expect(summary.samples.admitted).toBe(audit.samples);
        expect(summary.samples.trained + dropped + live).toBe(summary.samples.admitted);
        expect(Object.values(audit.dropped).reduce((a, b) => a + b, 0)).toBe(dropped);

        // The first iteration of the run reads the store for what an earlier attempt left; the
        // second follows a completed one, whose ledger it takes as exact, and reads nothing.
        const recovery = async (iteration: number) =>
          localActivityTypes(await env.client.workflow.getHandle(iterationWorkflowId(spec.runId, iteration)).fetchHistory()).filter((type) => STORE_RECOVERY.includes(type));
        expect((await recovery(0)).sort()).toEqual(STORE_RECOVERY);
        expect(await recovery(1)).toEqual([]);
      } finally {
        await workers.stop();
      }
    });
  }
});
