/**
 * The run workflow's page in the Temporal UI ("current details"), through the real pipeline (a
 * real dev server, the real workers, simulated engines): read with the query the UI sends, at
 * known points of a run: held in its first train step, paused after it, finished.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iterationWorkflowId } from '../../src/contract/naming';
import type { RunStatus } from '../../src/contract/types';
import { withFaultInjection } from '../../src/config/small';
import { faultInjectionDir } from '../../src/workers/runtime';
import { holdTrainStepIn } from '../helpers/heldTrainStep';
import { smallConfig, startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';

const RUN_ID = 'run-details';

/** What the Temporal UI shows as the workflow's current details. */
async function currentDetails(handle: WorkflowHandle): Promise<string> {
  const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
  return metadata.currentDetails ?? '';
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 240_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe("the run's current details (real Temporal)", () => {
  let env: PipelineEnv;
  beforeAll(async () => {
    env = await startPipelineEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('say which iteration runs, that a pause is asked and how to resume, and how the run ended', async () => {
    const context = env.context(withFaultInjection(smallConfig({ run: { id: RUN_ID, iterations: 2 } })));
    const workers = await env.startWorkers(context);
    try {
      // Injected before the run starts: its first train step is the one held.
      const held = holdTrainStepIn(faultInjectionDir(context.paths, RUN_ID));
      const { handle } = await env.startRun(context);
      const release = await held;

      const running = await currentDetails(handle);
      expect(running).toContain(`iteration 1 of 2 running: \`${iterationWorkflowId(RUN_ID, 0)}\``);
      expect(running).toContain('weights v0');
      await handle.executeUpdate('pause');
      expect(await currentDetails(handle)).toContain('pause requested (after this iteration)');

      release();
      await until('paused after the first iteration', async () => (await handle.query<RunStatus>('status')).paused);
      const paused = await currentDetails(handle);
      expect(paused).toContain(`**paused** after 1 of 2 iterations; go on with \`timeshare resume ${RUN_ID}\``);
      expect(paused).toContain('weights v1');
      expect(paused).not.toContain('pause requested');

      await handle.executeUpdate('resume');
      await handle.result();
      const finished = await currentDetails(handle);
      expect(finished).toContain('**finished**: 2 of 2 iterations');
      expect(finished).toContain('weights v2 · batch size 8 · samples trained 16');
    } finally {
      await workers.stop();
    }
  }, 600_000);
});
