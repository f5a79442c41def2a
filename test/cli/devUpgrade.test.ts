/**
 * `timeshare dev` resumed after a change to the workflow code (docs/design.md §5.2): the run's
 * in-flight iteration is pinned to the code version that started it, so `dev` runs a worker of
 * that version from the bundle cache beside the current one. The iteration finishes on the old
 * version, the run moves to the current one at its continue-as-new, and the run completes.
 *
 * The old version is the versioning test's v2 (an iteration starts with a timer): on the current
 * code its iteration would fail replay. Its iteration 0 is held at a known point, not raced: the
 * first phase runs no gpu-node worker, so the rollout shards it scheduled cannot start.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrAttachRun } from '../../src/cli/client';
import { workerContext } from '../../src/cli/context';
import { iterationWorkflowId, runWorkflowId } from '../../src/contract/naming';
import { buildRunSpec } from '../../src/contract/spec';
import { freePort } from '../../src/process/ports';
import { startDevServer } from '../../src/temporal/devServer';
import { cachedWorkflowBundle, currentBuildId, WORKFLOW_BUNDLE_INPUTS } from '../../src/workers/bundle';
import { installWorkerRuntime } from '../../src/workers/telemetry';
import { createVersionedOrchestratorWorker } from '../../src/workers/orchestrator';
import { deploymentNameFor, pinnedBuildIds } from '../../src/workers/versioning';
import { smallConfig } from '../helpers/pipeline';
import { runCli } from '../helpers/processes';

const ITERATIONS = 3;
const OLD_ENTRY = path.join(__dirname, '..', 'fixtures', 'versioning', 'v2Workflows.ts');
const { EventType } = temporal.api.enums.v1;
type History = temporal.api.history.v1.IHistory;

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 240_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const buildIdsOf = (history: History): string[] => [
  ...new Set((history.events ?? []).flatMap((event) => (event.workflowTaskCompletedEventAttributes?.deploymentVersion?.buildId ? [event.workflowTaskCompletedEventAttributes.deploymentVersion.buildId] : []))),
];
const count = (history: History, type: temporal.api.enums.v1.EventType): number => (history.events ?? []).filter((event) => event.eventType === type).length;
/** Each failed workflow task as its cause and message, so an unexpected one says why it failed. */
const failedTasks = (history: History): string[] =>
  (history.events ?? []).flatMap((event) => {
    const failed = event.workflowTaskFailedEventAttributes;
    if (event.eventType !== EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED || failed == null) return [];
    return [`event ${String(event.eventId)}: ${temporal.api.enums.v1.WorkflowTaskFailedCause[failed.cause ?? 0]}: ${failed.failure?.message ?? ''}`];
  });

/** A dev server on the state folder's database, as `dev` runs it, for the phases `dev` does not run. */
async function withServer<T>(stateDir: string, use: (client: Client, address: string) => Promise<T>): Promise<T> {
  const server = await startDevServer({ dbFile: path.join(stateDir, 'temporal.db'), headless: true, logFile: path.join(stateDir, `test-server-${Date.now()}.log`) });
  const connection = await Connection.connect({ address: server.address });
  try {
    return await use(new Client({ connection }), server.address);
  } finally {
    await connection.close();
    await server.stop();
  }
}

describe('timeshare dev after a change to the workflow code', () => {
  let dir: string;
  beforeAll(() => {
    installWorkerRuntime({ logLevel: 'WARN' });
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-dev-upgrade-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs the in-flight iteration on its own version from the bundle cache, the rest on the current one', async () => {
    const runId = 'dev-upgrade';
    const config = path.join(dir, `${runId}.json`);
    writeFileSync(config, JSON.stringify({ ...smallConfig(), run: { id: runId, iterations: ITERATIONS }, store: { dir: path.join(dir, 'store') } }));
    const stateDir = path.join(dir, 'state');
    mkdirSync(stateDir, { recursive: true });
    // In the cache `dev` reads (the repository's), as a worker of that version would have left it.
    const oldBundle = await cachedWorkflowBundle(OLD_ENTRY);
    expect(oldBundle.buildId).not.toBe(currentBuildId(WORKFLOW_BUNDLE_INPUTS));

    // Phase 1: the run starts on the old version; iteration 0 holds with its shards scheduled.
    await withServer(stateDir, async (client, address) => {
      const context = workerContext(config, { stateDir, address });
      const connection = await NativeConnection.connect({ address });
      const old = await createVersionedOrchestratorWorker(connection, context, { workflowBundle: oldBundle, setCurrent: 'always' });
      const running = old.worker.run();
      try {
        expect((await startOrAttachRun(client, buildRunSpec(context.parsed, context.runId))).kind).toBe('started');
        // Held once its shards are scheduled and neither workflow has a task in flight: nothing
        // moves it on without a gpu-node worker, and the old worker's shutdown cuts no task short.
        await waitFor('iteration 0 to schedule its rollout shards, with no workflow task in flight', async () => {
          const history = await client.workflow
            .getHandle(iterationWorkflowId(runId, 0))
            .fetchHistory()
            .catch(() => undefined);
          if (!history?.events?.some((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'runRolloutShards')) return undefined;
          const idle = async (workflowId: string) => (await client.workflow.getHandle(workflowId).describe()).raw.pendingWorkflowTask == null;
          return (await idle(iterationWorkflowId(runId, 0))) && (await idle(runWorkflowId(runId))) ? true : undefined;
        });
        const pinned = await pinnedBuildIds(client.workflowService, 'default', runWorkflowId(runId));
        expect([...pinned]).toEqual([[oldBundle.buildId, [runWorkflowId(runId), iterationWorkflowId(runId, 0)]]]);
      } finally {
        old.worker.shutdown();
        await running;
        await connection.close();
      }
    });

    // Phase 2: `dev` on the same state folder, its own workers on the current code.
    const ports = ['--port', String(await freePort()), '--ui-port', String(await freePort())];
    const dev = await runCli(['dev', config, '--state-dir', stateDir, ...ports], { timeoutMs: 400_000 });
    expect(dev.code, dev.out).toBe(0);
    expect(dev.stdout).toContain(`resumed run '${runId}'`);
    expect(dev.stdout).toContain(
      `${runWorkflowId(runId)} and ${iterationWorkflowId(runId, 0)} are pinned to the workflow code version ${oldBundle.buildId}: started an orchestrator worker of that version from ${oldBundle.codePath}`,
    );
    expect(dev.stdout).toMatch(new RegExp(`run '${runId}' finished: ${ITERATIONS} iterations`));
    // The old version's worker never makes itself current (it may find itself still current, from phase 1, if it looks first).
    const oldWorkerLog = readFileSync(path.join(stateDir, 'logs', `orchestrator-${oldBundle.buildId}.log`), 'utf8');
    expect(oldWorkerLog).toMatch(new RegExp(`orchestrator worker version \\S+\\.${oldBundle.buildId}: current version (already current|kept \\S+)`));
    expect(oldWorkerLog).not.toMatch(/current version set/);

    await withServer(stateDir, async (client) => {
      const current = currentBuildId(WORKFLOW_BUNDLE_INPUTS);
      const iteration = (k: number) => client.workflow.getHandle(iterationWorkflowId(runId, k)).fetchHistory();
      const first = await iteration(0);
      expect(buildIdsOf(first)).toEqual([oldBundle.buildId]);
      expect(count(first, EventType.EVENT_TYPE_TIMER_STARTED)).toBeGreaterThan(0);
      for (let k = 1; k < ITERATIONS; k++) expect(buildIdsOf(await iteration(k)), `iteration ${k}`).toEqual([current]);
      for (let k = 0; k < ITERATIONS; k++) expect(failedTasks(await iteration(k)), `iteration ${k}`).toEqual([]);
      expect(await pinnedBuildIds(client.workflowService, 'default', runWorkflowId(runId))).toEqual(new Map());
      const deployment = await client.workflowService.describeWorkerDeployment({ namespace: 'default', deploymentName: deploymentNameFor(workerContext(config, { stateDir }).parsed.config.temporal.taskQueuePrefix) });
      expect(deployment.workerDeploymentInfo?.routingConfig?.currentDeploymentVersion?.buildId).toBe(current);
    });
  }, 900_000);
});
