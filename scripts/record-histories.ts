/**
 * Records workflow histories for the replay test (test/pipeline/replay.test.ts): runs each
 * strategy, and the multiplexed one with weight sync by broadcast, for two iterations on a real
 * dev server with simulated engines and writes the run workflow's and every iteration workflow's
 * history to test/fixtures/histories/.
 *
 *   npx tsx scripts/record-histories.ts
 *
 * Re-record after an intended change to workflow code, once the fixtures of the version being
 * replaced are frozen beside its bundle in test/fixtures/versions.ts (docs/design.md §5.2).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { historyToJson } from '../src/temporal/historyJson';
import { iterationWorkflowId, runWorkflowId } from '../src/contract/naming';
import { smallConfig, startPipelineEnv } from '../src/launch/localPipeline';

const OUT = path.join(__dirname, '..', 'test', 'fixtures', 'histories');

const STRATEGIES: Record<string, Record<string, unknown>> = {
  multiplexed: {},
  colocated: { strategy: 'colocated', train: { gpus: 'all' }, asyncRatio: 0 },
  disaggregated: { strategy: 'disaggregated', rollout: { gpus: [0, 1, 2] }, train: { gpus: [3] } },
  // Weight sync by broadcast: the group's formation and its collectives are commands too.
  'multiplexed-broadcast': { engine: { weightSync: { mode: 'broadcast' } } },
};

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const env = await startPipelineEnv();
  try {
    for (const [strategy, overrides] of Object.entries(STRATEGIES)) {
      const runId = `replay-${strategy}`;
      const context = env.context(smallConfig({ ...overrides, run: { id: runId, iterations: 2 } }));
      const workers = await env.startWorkers(context);
      const { handle } = await env.startRun(context);
      await handle.result();
      await workers.stop();
      const ids = [runWorkflowId(runId), iterationWorkflowId(runId, 0), iterationWorkflowId(runId, 1)];
      for (const workflowId of ids) {
        const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
        const file = path.join(OUT, `${workflowId}.json`);
        writeFileSync(file, historyToJson(history));
        console.log(`recorded ${file} (${history.events?.length ?? 0} events)`);
      }
    }
  } finally {
    await env.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
