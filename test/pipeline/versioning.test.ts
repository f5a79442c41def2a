/**
 * Upgrade of workflow code with Worker Versioning (docs/design.md §5.2), against a real dev server:
 * a run whose iteration 0 is in flight on version 1, version 2 (whose iterations start with a
 * different command) started beside it and made current; iteration 0 finishes on v1, the run
 * continues-as-new onto v2 and the next iterations run there, without a non-determinism error;
 * v1 drains and its worker stops; every sample is accounted for exactly once.
 *
 * Iteration 0 is held at a known point, not raced: no gpu-node worker runs until v2 is current,
 * so its rollout shards cannot start and it cannot finish before then.
 */
import path from 'node:path';
import { temporal } from '@temporalio/proto';
import { NativeConnection, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iterationWorkflowId, runWorkflowId } from '../../src/contract/naming';
import { cachedWorkflowBundle, type CachedWorkflowBundle } from '../../src/workers/bundle';
import { createGpuNodeWorkers } from '../../src/workers/gpuNode';
import { createVersionedOrchestratorWorker } from '../../src/workers/orchestrator';
import { currentVersion, setCurrentVersion } from '../../src/workers/versioning';
import { smallConfig, startPipelineEnv, workflowBundle, type PipelineEnv } from '../helpers/pipeline';

const ITERATIONS = 3;
const BATCH = 8;
const V2_ENTRY = path.join(__dirname, '..', 'fixtures', 'versioning', 'v2Workflows.ts');
const { EventType, VersionDrainageStatus } = temporal.api.enums.v1;
type History = temporal.api.history.v1.IHistory;

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 240_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Build ids of the workers that completed the workflow tasks of a history. */
const buildIdsOf = (history: History): string[] => [
  ...new Set(
    (history.events ?? []).flatMap((event) => {
      const buildId = event.workflowTaskCompletedEventAttributes?.deploymentVersion?.buildId;
      return buildId ? [buildId] : [];
    }),
  ),
];
const count = (history: History, type: temporal.api.enums.v1.EventType): number => (history.events ?? []).filter((event) => event.eventType === type).length;

describe('Worker Versioning: upgrade of workflow code under a running run', () => {
  let env: PipelineEnv;
  let v2Bundle: CachedWorkflowBundle;
  beforeAll(async () => {
    env = await startPipelineEnv({
      // Drainage is re-checked every few minutes by default; the test waits for it.
      dynamicConfig: { 'matching.wv.VersionDrainageStatusRefreshInterval': '1s', 'matching.wv.VersionDrainageStatusVisibilityGracePeriod': '1s' },
    });
    v2Bundle = await cachedWorkflowBundle(V2_ENTRY);
  }, 600_000);
  afterAll(async () => {
    await env?.close();
  });

  it('finishes the in-flight iteration on v1, runs the next ones on v2, drains v1', async () => {
    const v1Bundle = await workflowBundle();
    expect(v2Bundle.buildId).not.toBe(v1Bundle.buildId);
    const context = env.context(smallConfig({ run: { id: 'versioning', iterations: ITERATIONS }, batchSize: BATCH }));
    const runId = context.runId;
    const namespace = 'default';
    const connection = await NativeConnection.connect({ address: env.server.address });
    const v1Connection = await NativeConnection.connect({ address: env.server.address });
    const running: { worker: Worker; done: Promise<void> }[] = [];
    const start = (worker: Worker): Promise<void> => {
      const done = worker.run();
      running.push({ worker, done });
      return done;
    };
    try {
      const v1 = await createVersionedOrchestratorWorker(v1Connection, context, { workflowBundle: v1Bundle, setCurrent: 'always', batchPollMs: 50 });
      const v1Run = start(v1.worker);
      const { handle } = await env.startRun(context);

      // Hold point: iteration 0 has scheduled its rollout shards on v1, and no rank worker exists.
      const iteration0 = env.client.workflow.getHandle(iterationWorkflowId(runId, 0));
      await waitFor('iteration 0 to schedule its rollout shards', async () => {
        const history = await iteration0.fetchHistory();
        const scheduled = (history.events ?? []).some((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'runRolloutShards');
        return scheduled ? true : undefined;
      });

      const v2 = await createVersionedOrchestratorWorker(connection, context, { workflowBundle: v2Bundle, setCurrent: 'always', batchPollMs: 50 });
      start(v2.worker);
      expect(await currentVersion(connection, namespace, v2.version.deploymentName)).toEqual(v2.version);
      const gpuWorkers = await createGpuNodeWorkers(connection, context, 0);
      gpuWorkers.forEach(start);

      // v1 drains once iteration 0 and the run's first execution have closed; then its worker stops.
      await waitFor('v1 to drain', async () => {
        const described = await connection.workflowService.describeWorkerDeploymentVersion({ namespace, deploymentVersion: v1.version });
        const status = described.workerDeploymentVersionInfo?.drainageInfo?.status;
        return status === VersionDrainageStatus.VERSION_DRAINAGE_STATUS_DRAINED ? true : undefined;
      });
      v1.worker.shutdown();
      await v1Run;
      expect(v1.worker.getState()).toBe('STOPPED');

      const summary = (await handle.result()) as { iterations: number };
      expect(summary.iterations).toBe(ITERATIONS);

      const histories = new Map<string, History>();
      for (let k = 0; k < ITERATIONS; k++) histories.set(`iteration ${k}`, await env.client.workflow.getHandle(iterationWorkflowId(runId, k)).fetchHistory());
      const parentOfIteration0 = (await iteration0.describe()).parentExecution?.runId ?? undefined;
      expect(parentOfIteration0).toBeDefined();
      const firstRun = await env.client.workflow.getHandle(runWorkflowId(runId), parentOfIteration0).fetchHistory();
      const lastRun = await env.client.workflow.getHandle(runWorkflowId(runId)).fetchHistory();
      histories.set('run (first execution)', firstRun);
      histories.set('run (last execution)', lastRun);

      expect(buildIdsOf(histories.get('iteration 0')!)).toEqual([v1.version.buildId]);
      expect(count(histories.get('iteration 0')!, EventType.EVENT_TYPE_TIMER_STARTED)).toBe(0);
      for (let k = 1; k < ITERATIONS; k++) {
        expect(buildIdsOf(histories.get(`iteration ${k}`)!), `iteration ${k}`).toEqual([v2.version.buildId]);
        expect(count(histories.get(`iteration ${k}`)!, EventType.EVENT_TYPE_TIMER_STARTED), `iteration ${k}`).toBeGreaterThan(0);
      }
      expect(buildIdsOf(firstRun)).toEqual([v1.version.buildId]);
      expect(count(firstRun, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)).toBe(1);
      expect(buildIdsOf(lastRun)).toEqual([v2.version.buildId]);
      for (const [name, history] of histories) expect(count(history, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED), name).toBe(0);

      // Each iteration replays on its own version; iteration 0 on v2 would be a non-determinism error.
      const replay = (bundle: WorkflowBundleOption, history: History, id: string) => Worker.runReplayHistory({ workflowBundle: bundle }, history, id);
      await replay(v1Bundle, histories.get('iteration 0')!, iterationWorkflowId(runId, 0));
      await replay(v2Bundle, histories.get('iteration 1')!, iterationWorkflowId(runId, 1));
      await expect(replay(v2Bundle, histories.get('iteration 0')!, iterationWorkflowId(runId, 0))).rejects.toMatchObject({ name: 'DeterminismViolationError' });

      const audit = await env.store(context).audit();
      expect(audit.violations).toEqual([]);
      expect(audit.batched).toBe(ITERATIONS * BATCH);
    } finally {
      for (const { worker } of running) if (worker.getState() === 'RUNNING') worker.shutdown();
      await Promise.allSettled(running.map(({ done }) => done));
      await connection.close();
      await v1Connection.close();
    }
  }, 900_000);

  it('makes a version current per policy: never, only if none, always', async () => {
    const connection = await NativeConnection.connect({ address: env.server.address });
    const version = (buildId: string) => ({ deploymentName: 'policy-test', buildId });
    try {
      expect(await setCurrentVersion(connection, 'default', version('b1'), 'never')).toBe('kept none');
      expect(await currentVersion(connection, 'default', 'policy-test')).toBeUndefined();
      expect(await setCurrentVersion(connection, 'default', version('b1'), 'if-none')).toBe('set');
      expect(await setCurrentVersion(connection, 'default', version('b2'), 'if-none')).toBe('kept policy-test.b1');
      expect(await setCurrentVersion(connection, 'default', version('b2'), 'never')).toBe('kept policy-test.b1');
      expect(await setCurrentVersion(connection, 'default', version('b1'), 'never')).toBe('already current');
      expect(await currentVersion(connection, 'default', 'policy-test')).toEqual(version('b1'));
      expect(await setCurrentVersion(connection, 'default', version('b2'), 'always')).toBe('set');
      expect(await currentVersion(connection, 'default', 'policy-test')).toEqual(version('b2'));
    } finally {
      await connection.close();
    }
  }, 300_000);
});
