/**
 * The run workflow keeps its history short by continuing as new, without repeating or skipping an
 * iteration; runs and iterations can be found by their typed search attributes (as the UI does).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orchestratorQueue, runWorkflowId } from '../../src/contract/naming';
import type { RunSummary } from '../../src/workflows/run';
import { smallConfig, startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';

describe('pipeline: continue-as-new and search attributes (real Temporal)', () => {
  let env: PipelineEnv;
  beforeAll(async () => {
    env = await startPipelineEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('continues as new every iteration, carries state over, and is searchable by run, strategy, iteration and phase', async () => {
    const runId = 'continue-as-new';
    const context = env.context(smallConfig({ run: { id: runId, iterations: 3 } }));
    const workers = await env.startWorkers(context);
    try {
      const spec = { ...env.spec(context), iterationsPerRunExecution: 1 };
      const handle = await env.client.workflow.start('runWorkflow', {
        workflowId: runWorkflowId(runId),
        taskQueue: orchestratorQueue(spec.taskQueuePrefix),
        args: [{ spec }],
      });
      const summary = (await handle.result()) as RunSummary;
      expect(summary.iterations).toBe(3);
      expect(summary.version).toBe(3);
      expect(summary.samples.trained).toBe(3 * spec.batchSize);

      const executions: string[] = [];
      for await (const execution of env.client.workflow.list({ query: `WorkflowId = '${runWorkflowId(runId)}'` })) executions.push(execution.status.name);
      expect(executions.sort()).toEqual(['COMPLETED', 'CONTINUED_AS_NEW', 'CONTINUED_AS_NEW']);
      expect(await env.store(context).listBatches()).toEqual([0, 1, 2]);

      // Visibility is eventually consistent: poll briefly for the iteration workflows.
      const find = async (query: string) => {
        for (let tries = 0; tries < 50; tries++) {
          const ids = new Set<string>();
          for await (const execution of env.client.workflow.list({ query })) ids.add(execution.workflowId);
          if (ids.size > 0) return [...ids].sort();
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        return [];
      };
      const all = await find(`TimeshareRunId = '${runId}'`);
      expect(all).toEqual([runWorkflowId(runId), `${runWorkflowId(runId)}-iter-0`, `${runWorkflowId(runId)}-iter-1`, `${runWorkflowId(runId)}-iter-2`]);
      expect(await find(`TimeshareRunId = '${runId}' AND TimeshareIteration = 1 AND WorkflowType = 'iterationWorkflow'`)).toEqual([`${runWorkflowId(runId)}-iter-1`]);
      expect(await find(`TimeshareStrategy = 'multiplexed' AND TimesharePhase = 'done' AND TimeshareRunId = '${runId}'`)).toHaveLength(4);
    } finally {
      await workers.stop();
    }
  });
});
